-- gitrev schema, version 6: a log of every change to a link, for the link tier (issue #12).
--
-- A replica can serve redirects from a file holding every link, built at one database snapshot.
-- It may trust that file only for codes that no transaction changed since: this log says which.
-- Each row is one code created, updated or deleted by one transaction, with that transaction's id.
-- "Changed since the build" means "written by a transaction the build's snapshot did not see"
-- (`pg_visible_in_snapshot`). A transaction still running when the tier was built, or committing
-- after it, is caught even if its rows got lower ids than ones that committed before.
--
-- The rows are written by triggers on `urls`, one statement per statement (transition tables);
-- a TRUNCATE writes one row with the empty code, which stands for every link.
-- So no write path, whether the service's or a hand-made `UPDATE` in psql, can change a link
-- without leaving a row here, or without announcing it (below). The service's maintenance pass
-- drops rows older than 7 days.
CREATE TABLE link_changes (
    xid        XID8 NOT NULL DEFAULT pg_current_xact_id(),
    short_code TEXT NOT NULL,
    changed_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX link_changes_xid_idx ON link_changes (xid);

-- Every code touched is also announced (NOTIFY gitrev_links), in the same transaction, so it is
-- delivered when the change commits: a replica learns of a link created or changed by any path
-- (the API, an import, psql) at once. A change or deletion announces the code itself (evicted
-- everywhere), a creation '+' and the code. These are the only announcements of link changes:
-- the service's statements no longer send their own.
CREATE FUNCTION log_link_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        -- Every link at once: the empty code (no link has it) stands for all of them, and '*'
        -- tells every replica to drop everything it holds.
        INSERT INTO link_changes (short_code) VALUES ('');
        PERFORM pg_notify('gitrev_links', '*');
    ELSIF TG_OP = 'INSERT' THEN
        -- '+code': created. A replica forgets that the code led nowhere but keeps what it
        -- cached since (a code's links are unique: whatever it holds is this new link).
        INSERT INTO link_changes (short_code) SELECT short_code FROM changed_new;
        PERFORM pg_notify('gitrev_links', '+' || short_code) FROM changed_new;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO link_changes (short_code) SELECT short_code FROM changed_old;
        PERFORM pg_notify('gitrev_links', short_code) FROM changed_old;
    ELSE
        -- Both codes when an update changed the code itself.
        INSERT INTO link_changes (short_code)
        SELECT short_code FROM changed_old UNION SELECT short_code FROM changed_new;
        PERFORM pg_notify('gitrev_links', short_code)
        FROM (SELECT short_code FROM changed_old UNION SELECT short_code FROM changed_new) c;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER urls_log_inserts AFTER INSERT ON urls
    REFERENCING NEW TABLE AS changed_new
    FOR EACH STATEMENT EXECUTE FUNCTION log_link_changes();
CREATE TRIGGER urls_log_updates AFTER UPDATE ON urls
    REFERENCING OLD TABLE AS changed_old NEW TABLE AS changed_new
    FOR EACH STATEMENT EXECUTE FUNCTION log_link_changes();
CREATE TRIGGER urls_log_deletes AFTER DELETE ON urls
    REFERENCING OLD TABLE AS changed_old
    FOR EACH STATEMENT EXECUTE FUNCTION log_link_changes();
CREATE TRIGGER urls_log_truncates AFTER TRUNCATE ON urls
    FOR EACH STATEMENT EXECUTE FUNCTION log_link_changes();
