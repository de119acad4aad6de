-- The same tables as the SQLite migrations, with the same portable column types, so that one
-- diesel schema and one row mapping serve both backends: times are microseconds since the Unix
-- epoch (UTC), ids are hyphenated UUID text (the cluster's C collation keeps them cheap to
-- compare), structured settings are JSON text.

CREATE TABLE wallets (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    wallet_id TEXT NOT NULL REFERENCES wallets (id) ON DELETE CASCADE,
    tag BYTEA NOT NULL,
    salt BYTEA NOT NULL,
    digest BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX api_keys_by_tag ON api_keys (tag);

-- wallet_id is NULL for the global webhook. Deleted webhooks are kept (deleted_at set) so that
-- their deliveries and attempts stay visible.
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY NOT NULL,
    wallet_id TEXT REFERENCES wallets (id),
    url TEXT NOT NULL,
    custom_headers TEXT NOT NULL,
    event_types TEXT,
    signing_keys TEXT,
    retry_policy TEXT,
    enabled BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE INDEX webhooks_live_by_wallet ON webhooks (wallet_id, created_at) WHERE deleted_at IS NULL;

CREATE TABLE events (
    id TEXT PRIMARY KEY NOT NULL,
    wallet_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    ts BIGINT NOT NULL,
    data TEXT NOT NULL,
    idempotency_key TEXT,
    fingerprint TEXT,
    deliveries INTEGER NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX events_by_idempotency_key ON events (wallet_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX events_by_created_at ON events (created_at);

-- due_at is when the row may next be claimed (the due time, or the end of the lease); NULL
-- once the delivery is final, which keeps final rows out of the claim index.
CREATE TABLE deliveries (
    id TEXT PRIMARY KEY NOT NULL,
    event_id TEXT NOT NULL REFERENCES events (id),
    webhook_id TEXT NOT NULL REFERENCES webhooks (id),
    wallet_id TEXT NOT NULL,
    state TEXT NOT NULL,
    due_at BIGINT,
    attempts INTEGER NOT NULL,
    lease_owner TEXT,
    final_at BIGINT,
    cancel_reason TEXT,
    first_due BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX deliveries_claimable ON deliveries (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX deliveries_by_event ON deliveries (event_id);
CREATE INDEX deliveries_by_webhook ON deliveries (webhook_id, created_at);
CREATE INDEX deliveries_by_wallet ON deliveries (wallet_id, created_at);

CREATE TABLE attempts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id TEXT NOT NULL REFERENCES deliveries (id),
    number INTEGER NOT NULL,
    started_at BIGINT NOT NULL,
    duration_us BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    status_code INTEGER,
    response_excerpt TEXT,
    error TEXT
);
CREATE INDEX attempts_by_delivery ON attempts (delivery_id, id);
