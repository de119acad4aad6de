CREATE TABLE events_rebuilt (
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
INSERT INTO events_rebuilt
    (id, wallet_id, event_type, ts, data, idempotency_key, fingerprint, deliveries, created_at)
SELECT id, wallet_id, event_type, ts, data, idempotency_key, fingerprint, deliveries, created_at
FROM events;

CREATE TABLE deliveries_rebuilt (
    id TEXT PRIMARY KEY NOT NULL,
    event_id TEXT NOT NULL REFERENCES events_rebuilt (id),
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
INSERT INTO deliveries_rebuilt
    (id, event_id, webhook_id, wallet_id, state, due_at, attempts, lease_owner, final_at,
     cancel_reason, first_due, created_at)
SELECT id, event_id, webhook_id, wallet_id, state, due_at, attempts, lease_owner, final_at,
       cancel_reason, first_due, created_at
FROM deliveries;

CREATE TABLE attempts_rebuilt (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    delivery_id TEXT NOT NULL REFERENCES deliveries_rebuilt (id),
    number INTEGER NOT NULL,
    started_at BIGINT NOT NULL,
    duration_us BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    status_code INTEGER,
    response_excerpt TEXT,
    error TEXT
);
INSERT INTO attempts_rebuilt SELECT * FROM attempts;

DROP TABLE attempts;
DROP TABLE deliveries;
DROP TABLE events;
ALTER TABLE events_rebuilt RENAME TO events;
ALTER TABLE deliveries_rebuilt RENAME TO deliveries;
ALTER TABLE attempts_rebuilt RENAME TO attempts;

CREATE UNIQUE INDEX events_by_idempotency_key ON events (wallet_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX events_by_created_at ON events (created_at);
CREATE INDEX attempts_by_delivery ON attempts (delivery_id, id);
CREATE INDEX deliveries_claimable ON deliveries (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX deliveries_by_event ON deliveries (event_id);
CREATE INDEX deliveries_by_webhook ON deliveries (webhook_id, created_at);
CREATE INDEX deliveries_by_wallet ON deliveries (wallet_id, created_at);
CREATE INDEX deliveries_exhausted_by_webhook ON deliveries (webhook_id, created_at)
    WHERE state = 'exhausted';

ALTER TABLE webhooks DROP COLUMN revision;
ALTER TABLE webhooks DROP COLUMN last_seq;
