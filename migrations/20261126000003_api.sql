-- The inserting transaction's id: the stream's position. A reader takes only rows below the oldest
-- transaction still running (pg_snapshot_xmin), in (txid, id) order, so an event whose transaction
-- commits late is never skipped by a cursor that already moved on.
ALTER TABLE events ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX events_by_txid ON events (environment, txid, id);

-- API keys for downstream services. Only a SHA-256 of the key is stored: the key carries 256 random
-- bits, so a leaked table yields no usable key.
CREATE TABLE api_keys (
    id            UUID PRIMARY KEY,
    name          TEXT        NOT NULL,
    environment   TEXT        NOT NULL,
    permission    TEXT        NOT NULL CHECK (permission IN ('read', 'write')),
    allow_ips     TEXT[]      NOT NULL DEFAULT '{}',
    key_hash      BYTEA       NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
    -- The key's first characters, to recognise it in listings without revealing it.
    key_hint      TEXT        NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at  TIMESTAMPTZ,
    expires_at    TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ,
    -- Set when a rotation replaced this key; it stays valid until expires_at (the grace period).
    superseded_at TIMESTAMPTZ
);
-- One current key per name; rotated-out keys keep the name while their grace runs.
CREATE UNIQUE INDEX api_keys_current_name ON api_keys (name)
    WHERE superseded_at IS NULL AND revoked_at IS NULL;

-- Replays requested with an Idempotency-Key: a repeated request is answered from here, doing nothing.
CREATE TABLE replays (
    environment     TEXT        NOT NULL,
    idempotency_key TEXT        NOT NULL,
    event_id        UUID        NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    handlers        TEXT[]      NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (environment, idempotency_key)
);
