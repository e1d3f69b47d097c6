-- gitrev schema, version 4: link lifecycle and redirect options (docs/api.md, "Link lifecycle and
-- redirect options").
--
-- Every new column has a constant default (NULL, FALSE or '{}'), so adding it rewrites nothing: on
-- PostgreSQL 11 and later it is a catalog change. The two indexes are built by this migration in
-- one pass over `urls` (writes to `urls` wait meanwhile); on a table of many millions see
-- docs/operations.md ("Migration 0004 on a large table") for building them CONCURRENTLY first.
ALTER TABLE urls
    -- From this instant on (UTC) the link is expired.
    ADD COLUMN IF NOT EXISTS expires_at      TIMESTAMP,
    -- Once the url has this many clicks it is expired.
    ADD COLUMN IF NOT EXISTS max_clicks      BIGINT CHECK (max_clicks >= 1),
    -- Where an expired link sends its visitors (302, no click); NULL: 404 `expired`.
    ADD COLUMN IF NOT EXISTS expired_url     TEXT,
    -- This link's redirect status; NULL: the server's GITREV_REDIRECT_STATUS.
    ADD COLUMN IF NOT EXISTS redirect_status SMALLINT CHECK (redirect_status IN (301, 302, 307, 308)),
    -- Append the request's query string to the target's.
    ADD COLUMN IF NOT EXISTS forward_query   BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN IF NOT EXISTS tags            TEXT[] NOT NULL DEFAULT '{}' CHECK (cardinality(tags) <= 20);

-- `GET /urls?tag=a&tag=b`: `tags @> ARRAY['a', 'b']`.
CREATE INDEX IF NOT EXISTS urls_tags_idx ON urls USING gin (tags);

-- `GET /urls?q=`: a case-insensitive substring of the code, the target or the title. One trigram
-- index over the three joined by U+001F; a search may hold no control character, so no match spans
-- two columns. pg_trgm is a trusted extension: the database's owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX IF NOT EXISTS urls_search_idx ON urls USING gin (
    (short_code || E'\x1f' || original_url || E'\x1f' || COALESCE(title, '')) gin_trgm_ops);
