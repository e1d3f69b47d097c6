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
-- This migration only creates: it takes a moment whatever the size of the log. The clicks stored
-- one row each stay in `clicks`, where replicas of the previous version keep writing them during a
-- rolling upgrade; the views show them like the others, and the service moves them into runs in
-- the background, chunk by chunk (docs/operations.md, "The click log: partitions, retention, old
-- clicks").

-- One row per run, partitioned by UTC day of its first click (every click of a run has that day):
-- `click_runs_pYYYYMMDD`, made ahead by the service like the partitions of `clicks` were.
CREATE TABLE click_runs (
    first_id BIGINT NOT NULL,
    last_id  BIGINT NOT NULL,
    at       TIMESTAMP NOT NULL,
    link_id  INTEGER NOT NULL,
    -- Ascending, drawn from the events sequence (ids unique across all events, in recording order).
    ids      BIGINT[] NOT NULL,
    ats      TIMESTAMP[] NOT NULL,
    contexts INTEGER[] NOT NULL,
    CONSTRAINT click_runs_run CHECK (cardinality(ids) BETWEEN 1 AND 64
        AND cardinality(ats) = cardinality(ids) AND cardinality(contexts) = cardinality(ids)
        AND last_id - first_id < 65536)
) PARTITION BY RANGE (at);
-- A url's (or user's) runs in id order, for `GET /events?url_id=` and the CSV export (`last_id`
-- comes along for the queries that need nothing else of a run: index-only scans).
CREATE INDEX click_runs_link_first_idx ON click_runs (link_id, first_id) INCLUDE (last_id);
-- A click by id (`GET /events/{id}`): the runs starting at most 65,536 ids before it are a range
-- of this index (one entry per run), read to find the one holding it: ~1,700 runs when batches
-- spread over 1,000 urls (~38 clicks a run), up to 65,536 when every run holds one click.
CREATE INDEX click_runs_first_idx ON click_runs (first_id) INCLUDE (last_id);

-- A click's `details` as the API shows it, rebuilt from its link version and context: a posted
-- click's own keys (`extra`) win over the link's, except `bot`, which is always the
-- classification. (A SQL function: inlined where it is used.)
CREATE FUNCTION click_details(l click_links, x click_contexts) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object('short_code', l.short_code,
               'original_url', l.original_url, 'referrer', x.referrer,
               'user_agent', x.user_agent))
           || COALESCE(x.extra, '{}'::jsonb) || jsonb_build_object('bot', x.bot)
$$;

-- Every click as its own row, with the run it is stored in (`first_id`, `last_id`: a reader
-- looking for given ids narrows the runs with them; a click stored one row each is its own run).
CREATE VIEW click_log AS
    SELECT r.first_id, r.last_id, u.id, l.url_id, l.user_id, 'click'::text AS event_type,
           u.at AS timestamp, click_details(l, x) AS details
    FROM click_runs r
    CROSS JOIN LATERAL unnest(r.ids, r.ats, r.contexts) AS u(id, at, context_id)
    -- Left joins (every click has both rows) let the planner skip a join no filter needs.
    LEFT JOIN click_links l ON l.id = r.link_id
    LEFT JOIN click_contexts x ON x.id = u.context_id
    UNION ALL
    SELECT c.id, c.id, c.id, l.url_id, l.user_id, 'click'::text, c.at, click_details(l, x)
    FROM clicks c
    LEFT JOIN click_links l ON l.id = c.link_id
    LEFT JOIN click_contexts x ON x.id = c.context_id;

-- Every event as the API shows it: the generic log and the clicks, one id space.
CREATE OR REPLACE VIEW event_log AS
    SELECT id, url_id, user_id, event_type, timestamp, details FROM events
    UNION ALL
    SELECT id, url_id, user_id, event_type, timestamp, details FROM click_log;

-- The same rows without a click's `details` (NULL), with what rebuilds it (`link_id`,
-- `context_id`; NULL for a row of `events`): a page of a long list is chosen from these, and
-- only its own clicks' details are built (`click_details`), not those of every click sorted.
CREATE VIEW event_rows AS
    SELECT id, url_id, user_id, event_type, timestamp, details,
           NULL::integer AS link_id, NULL::integer AS context_id
    FROM events
    UNION ALL
    SELECT u.id, l.url_id, l.user_id, 'click'::text, u.at, NULL::jsonb, r.link_id, u.context_id
    FROM click_runs r
    CROSS JOIN LATERAL unnest(r.ids, r.ats, r.contexts) AS u(id, at, context_id)
    LEFT JOIN click_links l ON l.id = r.link_id
    UNION ALL
    SELECT c.id, l.url_id, l.user_id, 'click'::text, c.at, NULL::jsonb, c.link_id, c.context_id
    FROM clicks c
    LEFT JOIN click_links l ON l.id = c.link_id;
