-- gitrev schema, version 7: a statement that changes many links announces them all at once.
--
-- Migration 6 announces every code a statement touches, one NOTIFY each. A hand-made UPDATE or
-- DELETE of a million urls, or an import of as many, would queue a million notifications: the
-- committing transaction writes them all while it holds PostgreSQL's notify lock (every other
-- notifying commit, every POST /urls, waits meanwhile), the queue grows by tens of megabytes, and
-- every replica handles them one by one, tracking each code as changed since its tier's build.
-- Above 10,000 codes a statement now announces '*' once instead: every replica drops its cache and
-- its tier (the next rebuild replaces it), as for a TRUNCATE. The change log still gets one row per
-- code: a replica that missed the announcement reads those when it catches up.
CREATE OR REPLACE FUNCTION log_link_changes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    -- The most codes one statement announces one by one.
    one_by_one CONSTANT bigint := 10000;
    codes text[];
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        -- Every link at once: the empty code (no link has it) stands for all of them, and '*'
        -- tells every replica to drop everything it holds.
        INSERT INTO link_changes (short_code) VALUES ('');
        PERFORM pg_notify('gitrev_links', '*');
        RETURN NULL;
    END IF;
    -- The codes the statement touched (both codes when an update changed the code itself), each
    -- logged once.
    IF TG_OP = 'INSERT' THEN
        WITH logged AS (INSERT INTO link_changes (short_code)
                        SELECT short_code FROM changed_new RETURNING short_code)
        SELECT array_agg(short_code) INTO codes FROM logged;
    ELSIF TG_OP = 'DELETE' THEN
        WITH logged AS (INSERT INTO link_changes (short_code)
                        SELECT short_code FROM changed_old RETURNING short_code)
        SELECT array_agg(short_code) INTO codes FROM logged;
    ELSE
        WITH logged AS (INSERT INTO link_changes (short_code)
                        SELECT short_code FROM changed_old
                        UNION SELECT short_code FROM changed_new RETURNING short_code)
        SELECT array_agg(short_code) INTO codes FROM logged;
    END IF;
    IF cardinality(codes) > one_by_one THEN
        PERFORM pg_notify('gitrev_links', '*');
    ELSE
        -- '+code': created. A replica forgets that the code led nowhere but keeps what it cached
        -- since (a code's links are unique: whatever it holds is this new link). A change or a
        -- deletion announces the code itself.
        PERFORM pg_notify('gitrev_links', CASE TG_OP WHEN 'INSERT' THEN '+' ELSE '' END || code)
        FROM unnest(codes) AS code;
    END IF;
    RETURN NULL;
END
$$;
