-- no-transaction
-- The event list filtered by type and/or event (GET /events?type=...&event=...): one index whose
-- leading columns are the filters and whose trailing ones are the page order, so a page reads its
-- rows in order and stops. A filter on the type alone, or the event alone, walks the few distinct
-- (type, event) pairs of the environment through the same index (see src/store/queries.rs); one
-- index for every combination keeps ingest's cost at one more insert per event.
--
-- CONCURRENTLY: a deployment with months of events keeps ingesting while it builds (a plain
-- CREATE INDEX would block every insert for the whole build). It cannot run in a transaction, hence
-- a file of its own with one statement. If a build is interrupted, PostgreSQL leaves an INVALID
-- index of this name: drop it and restart the service.
CREATE INDEX CONCURRENTLY IF NOT EXISTS events_by_kind
    ON events (environment, event_type, event, received_at, id);
