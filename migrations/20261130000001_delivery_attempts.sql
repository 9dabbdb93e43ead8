-- Per-handler claims and attempt history.
--
-- A dispatcher claims each handler's due deliveries on their own, in due order, through an index
-- that starts with the handler: a claim reads the few rows it takes, however long the backlog.
-- Expired leases are found by a separate sweep over `deliveries_leased`, so the claim has no OR.
CREATE INDEX deliveries_due_by_handler ON deliveries (handler, next_attempt_at) WHERE status = 'pending';
DROP INDEX deliveries_due;

-- When the running attempt started and which worker runs it: what the sweep writes into the
-- history when that worker vanishes.
ALTER TABLE deliveries
    ADD COLUMN attempt_started_at TIMESTAMPTZ,
    ADD COLUMN leased_by TEXT;

-- Every attempt of every delivery, as Svix's message attempts: retries and replays add rows and
-- never reset them; a delivery's attempts go with it (retention, cascade from the event).
CREATE TABLE delivery_attempts (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id  BIGINT      NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    -- The claim that made the attempt: a late outcome from a worker whose lease the sweep took
    -- fills in the row the sweep wrote, instead of adding a second one.
    lease_token  UUID        NOT NULL,
    -- The attempt's number as the handler saw it (it starts again at 1 after a replay or retry).
    attempt      INTEGER     NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    duration_ms  INTEGER,
    outcome      TEXT        NOT NULL
                             CHECK (outcome IN ('succeeded', 'failed', 'rejected', 'lease_expired')),
    http_status  SMALLINT,
    error        TEXT,
    worker       TEXT        NOT NULL,
    -- Also the index that lists a delivery's attempts and deletes them with it.
    CONSTRAINT delivery_attempts_once UNIQUE (delivery_id, lease_token)
);
