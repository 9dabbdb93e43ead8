-- no-transaction
-- GET /events?source=reconciliation: the recovered events are a small share of all events, so the
-- list of them through `events_by_received` would read the whole environment to fill a page. A
-- partial index holds only those rows: ingest of webhook events never touches it.
-- (`source=webhook` is most events; `events_by_received` with a filter serves it.)
-- The query names the value literally: a partial index is usable only when the planner can prove
-- its predicate, which a bind parameter does not (generic plans).
CREATE INDEX CONCURRENTLY IF NOT EXISTS events_reconciled
    ON events (environment, received_at, id) WHERE source = 'reconciliation';
