-- no-transaction
-- Deduplication through an index that grows at its end instead of everywhere.
--
-- `events_dedup (environment, dedup_key)` is keyed by a SHA-256: every insert lands on a random
-- leaf page. Once the index outgrows shared buffers each insert reads a random page, and the first
-- change to a page after a checkpoint writes the whole page (8 KB) to the WAL: ingest slowed as the
-- table grew (docs/performance.md, "Growth").
--
-- The same uniqueness, with the payment's `updated_at` first: a duplicate has the same key, and the
-- key is derived from that very `updated_at` (src/event/dedup.rs; events keyed by their body have
-- none, NULL, and NULLS NOT DISTINCT keeps them unique too), so (environment, payment_updated_at,
-- dedup_key) is unique exactly when (environment, dedup_key) is. New events carry an `updated_at`
-- of about now, so inserts go to the right edge of the index: the pages being written are the few
-- recent ones, in memory, and written to the WAL in full once per checkpoint, not once per insert.
--
-- CONCURRENTLY and alone in its file (no transaction): ingest goes on while it builds. The next
-- migration moves the constraint `events_dedup` onto it and drops the old index.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS events_dedup_by_time
    ON events (environment, payment_updated_at, dedup_key) NULLS NOT DISTINCT;
