-- The database's own ceiling for user creation: one multi-row insert of 100 users per
-- transaction, the shape the grouped POST /users writer sends.
INSERT INTO users (username, email)
SELECT 'pgbench', 'pgb-' || :client_id || '-' || md5(random()::text || clock_timestamp()::text) || '@perf.example'
FROM generate_series(1, 100);
