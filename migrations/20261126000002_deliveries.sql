-- The outbox: one row per (event, handler) whose route matches, written in the same transaction as
-- the event. Its state is the whole truth about a delivery; NOTIFY only wakes dispatchers.
CREATE TABLE deliveries (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id         UUID        NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    handler          TEXT        NOT NULL,
    status           TEXT        NOT NULL DEFAULT 'pending'
                                 CHECK (status IN ('pending', 'in_flight', 'succeeded', 'dead')),
    -- Attempts started, counted when a worker claims the row (so a worker that dies still counts).
    attempts         INTEGER     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The claim that holds the row: completion is fenced on it, so a worker whose lease expired
    -- cannot overwrite the outcome of the worker that took the row over.
    lease_token      UUID,
    lease_expires_at TIMESTAMPTZ,
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at     TIMESTAMPTZ,
    CONSTRAINT deliveries_once UNIQUE (event_id, handler),
    CONSTRAINT deliveries_lease CHECK ((status = 'in_flight') = (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL))
);

CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_leased ON deliveries (lease_expires_at) WHERE status = 'in_flight';
CREATE INDEX deliveries_dead ON deliveries (completed_at) WHERE status = 'dead';
