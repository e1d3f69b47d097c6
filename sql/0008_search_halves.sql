-- gitrev schema, version 8: `?q=` searches two halves of the urls at once.
--
-- A search's cost is its matches: each is rechecked on its heap page (a trigram match is only a
-- candidate), about 2 µs apiece from shared buffers, and an exact x-total-count needs them all.
-- One statement runs on one core. The one trigram index of migration 4 is replaced by two partial
-- ones, each over every other block of 256 ids; the service runs a search as two statements on two
-- connections at once, one per half (crates/store/src/urls.rs, `SEARCH_HALVES`), and adds up
-- their counts. With no second connection free it runs one statement over both (a BitmapOr).
-- Each url is in exactly one of the two, so writes cost what they did. Blocks of ids rather than
-- odd and even ids: rows created together share heap pages, and a page visited by both halves is
-- visited twice; 256 rather than more, so that a burst of related urls (one bulk call) still
-- splits between the halves.
--
-- Building them is one pass over `urls` each (writes to `urls` wait meanwhile); on a table of many
-- millions see docs/operations.md ("Migration 0008 on a large table") for building them
-- CONCURRENTLY first.
CREATE INDEX IF NOT EXISTS urls_search_0 ON urls USING gin (
    (short_code || E'\x1f' || original_url || E'\x1f' || COALESCE(title, '')) gin_trgm_ops)
    WHERE (id / 256) % 2 = 0;
CREATE INDEX IF NOT EXISTS urls_search_1 ON urls USING gin (
    (short_code || E'\x1f' || original_url || E'\x1f' || COALESCE(title, '')) gin_trgm_ops)
    WHERE (id / 256) % 2 = 1;
DROP INDEX IF EXISTS urls_search_idx;
