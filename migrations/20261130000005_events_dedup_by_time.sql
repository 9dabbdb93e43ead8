-- The constraint `events_dedup` now stands on `events_dedup_by_time` (the previous migration), and
-- the random-keyed index it stood on goes. Same name, same uniqueness: every release's insert
-- (`ON CONFLICT ON CONSTRAINT events_dedup`) keeps working while old and new replicas run side by
-- side. One statement, so one short exclusive lock and no scan (the index is already built and
-- valid); the index takes the constraint's name.
ALTER TABLE events
    DROP CONSTRAINT events_dedup,
    ADD CONSTRAINT events_dedup UNIQUE USING INDEX events_dedup_by_time;
