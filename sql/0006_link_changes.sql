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
-- without leaving a row here. The service prunes rows older than any tier in use.
CREATE TABLE link_changes (
    xid        XID8 NOT NULL DEFAULT pg_current_xact_id(),
    short_code TEXT NOT NULL,
    changed_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX link_changes_xid_idx ON link_changes (xid);

CREATE FUNCTION log_link_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        -- Every link at once: the empty code (no link has it) stands for all of them.
        INSERT INTO link_changes (short_code) VALUES ('');
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO link_changes (short_code) SELECT short_code FROM changed_new;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO link_changes (short_code) SELECT short_code FROM changed_old;
    ELSE
        -- Both codes when an update changed the code itself.
        INSERT INTO link_changes (short_code)
        SELECT short_code FROM changed_old UNION SELECT short_code FROM changed_new;
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
