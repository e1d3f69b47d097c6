-- gitrev schema, version 5: a batch's clicks of one link are stored as one row, a "run" (see
-- docs/decisions.md, "Click runs").
--
-- A click row of version 2 cost PostgreSQL one heap tuple and one b-tree entry per click; under
-- the redirect benchmark the b-tree insert alone was over half of PostgreSQL's time. A run holds up
-- to 64 clicks of one link version, one UTC day and one batch: their ids, instants and contexts as
-- three arrays (20 bytes a click), with one index entry per run. Nothing about a click is lost:
-- `event_log` unnests the runs and shows every click as before.
--
-- A run's ids ascend, and span less than 65,536 (`last_id - first_id`): a reader looking for ids
-- past a point needs runs starting at most that far before it. Runs of different batches of one
-- link may interleave (batches written at once), so readers never assume runs are disjoint.
--
-- This migration rewrites the clicks already stored, in one transaction: about as long as reading
-- them once and writing a quarter of their bytes. Redirects keep answering meanwhile; click
-- writers wait (their queues hold the clicks) until it commits. See docs/operations.md,
-- "Migration 0005 on a large click log".

DROP VIEW event_log;
ALTER TABLE clicks RENAME TO clicks_v2;
ALTER INDEX clicks_link_id_idx RENAME TO clicks_v2_link_id_idx;
ALTER INDEX clicks_id_brin RENAME TO clicks_v2_id_brin;
-- The day partitions keep their names for the new table; the old ones step aside.
DO $$
DECLARE p record;
BEGIN
    FOR p IN SELECT c.relname::text AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'clicks_v2'::regclass LOOP
        EXECUTE format('ALTER TABLE %I RENAME TO %I', p.name, 'v2_' || p.name);
    END LOOP;
END $$;

-- One row per run, partitioned by UTC day of its first click (every click of a run has that day).
CREATE TABLE clicks (
    first_id BIGINT NOT NULL,
    last_id  BIGINT NOT NULL,
    at       TIMESTAMP NOT NULL,
    link_id  INTEGER NOT NULL,
    -- Ascending, drawn from the events sequence (ids unique across all events, in recording order).
    ids      BIGINT[] NOT NULL,
    ats      TIMESTAMP[] NOT NULL,
    contexts INTEGER[] NOT NULL,
    CONSTRAINT clicks_run CHECK (cardinality(ids) BETWEEN 1 AND 64 AND cardinality(ats) = cardinality(ids)
           AND cardinality(contexts) = cardinality(ids) AND last_id - first_id < 65536)
) PARTITION BY RANGE (at);
-- A url's (or user's) runs in id order, for `GET /events?url_id=` and the CSV export; `last_id`
-- comes along so that runs ending before a point are passed over in the index.
CREATE INDEX clicks_link_first_idx ON clicks (link_id, first_id) INCLUDE (last_id);
-- A click by id (`GET /events/{id}`): runs are appended about in id order, so the pages whose
-- runs start at or before an id and end at or after it are few.
CREATE INDEX clicks_span_brin ON clicks USING brin (first_id, last_id)
    WITH (pages_per_range = 16, autosummarize = on);

DO $$
DECLARE p record;
BEGIN
    FOR p IN SELECT c.relname::text AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'clicks_v2'::regclass LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF clicks FOR VALUES FROM (%L) TO (%L)',
                       substr(p.name, 4),
                       to_date(substr(p.name, 12), 'YYYYMMDD'),
                       to_date(substr(p.name, 12), 'YYYYMMDD') + 1);
    END LOOP;
END $$;

-- Runs of up to 64 consecutive ids (`id >> 6`) of one link and day.
INSERT INTO clicks (first_id, last_id, at, link_id, ids, ats, contexts)
SELECT min(id), max(id), min(at), link_id,
       array_agg(id ORDER BY id), array_agg(at ORDER BY id), array_agg(context_id ORDER BY id)
FROM clicks_v2
GROUP BY link_id, date_trunc('day', at), id >> 6;

DROP TABLE clicks_v2;

-- Every click as its own row, with the run it is stored in (`first_id`, `last_id`: a reader
-- looking for given ids narrows the runs with them).
CREATE VIEW click_log AS
    SELECT c.first_id, c.last_id, u.id, l.url_id, l.user_id, 'click'::text AS event_type,
           u.at AS timestamp,
           jsonb_strip_nulls(jsonb_build_object('short_code', l.short_code,
               'original_url', l.original_url, 'referrer', x.referrer,
               'user_agent', x.user_agent))
           || COALESCE(x.extra, '{}'::jsonb) || jsonb_build_object('bot', x.bot) AS details
    FROM clicks c
    CROSS JOIN LATERAL unnest(c.ids, c.ats, c.contexts) AS u(id, at, context_id)
    -- Left joins (every click has both rows) let the planner skip a join no filter needs.
    LEFT JOIN click_links l ON l.id = c.link_id
    LEFT JOIN click_contexts x ON x.id = u.context_id;

-- Every event as the API shows it: the generic log and the clicks, one id space. A click's
-- `details` is rebuilt from its link and context; a posted click's own keys (`extra`) win over
-- the link's, except `bot`, which is always the classification.
CREATE VIEW event_log AS
    SELECT id, url_id, user_id, event_type, timestamp, details FROM events
    UNION ALL
    SELECT id, url_id, user_id, event_type, timestamp, details FROM click_log;
