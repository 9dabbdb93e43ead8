-- Every verified, well-formed Voltage event, exactly once per environment.
CREATE TABLE events (
    id                 UUID PRIMARY KEY,
    environment        TEXT        NOT NULL,
    -- SHA-256 of the event's identity (see src/event/dedup.rs). The unique constraint below, not
    -- application code, decides what is a duplicate.
    dedup_key          BYTEA       NOT NULL CHECK (octet_length(dedup_key) = 32),
    event_type         TEXT        NOT NULL,
    event              TEXT        NOT NULL,
    payment_id         TEXT,
    payment_status     TEXT,
    payment_updated_at TIMESTAMPTZ,
    payload            JSONB       NOT NULL,
    -- The exact signed bytes, so the signature can be re-checked and the body served byte for byte.
    raw_body           BYTEA       NOT NULL,
    source             TEXT        NOT NULL DEFAULT 'webhook'
                                   CHECK (source IN ('webhook', 'reconciliation')),
    -- Which registration and which secret position verified the first arrival (never the secret).
    webhook_id         UUID,
    secret_index       SMALLINT    CHECK (secret_index >= 0),
    signed_timestamp   BIGINT,
    received_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_received_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    arrival_count      INTEGER     NOT NULL DEFAULT 1 CHECK (arrival_count >= 1),
    CONSTRAINT events_dedup UNIQUE (environment, dedup_key),
    CONSTRAINT events_webhook_provenance CHECK (
        source <> 'webhook'
        OR (webhook_id IS NOT NULL AND secret_index IS NOT NULL AND signed_timestamp IS NOT NULL)
    )
);

CREATE INDEX events_by_received ON events (environment, received_at, id);
CREATE INDEX events_by_payment ON events (environment, payment_id) WHERE payment_id IS NOT NULL;

-- Authentic (verified) bodies that could not be read as Voltage events: kept for operators, never
-- dropped silently. One row per distinct body and environment; retries bump the count.
CREATE TABLE quarantine (
    id               UUID PRIMARY KEY,
    environment      TEXT        NOT NULL,
    body_sha256      BYTEA       NOT NULL CHECK (octet_length(body_sha256) = 32),
    raw_body         BYTEA       NOT NULL,
    reason           TEXT        NOT NULL,
    webhook_id       UUID        NOT NULL,
    secret_index     SMALLINT    NOT NULL CHECK (secret_index >= 0),
    signed_timestamp BIGINT      NOT NULL,
    received_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    arrival_count    INTEGER     NOT NULL DEFAULT 1 CHECK (arrival_count >= 1),
    CONSTRAINT quarantine_once UNIQUE (environment, body_sha256)
);
