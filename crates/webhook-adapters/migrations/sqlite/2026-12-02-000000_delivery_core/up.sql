-- The delivery core (issue 14), as in the PostgreSQL migration of the same name. SQLite cannot
-- change a primary key or a foreign key in place, so `events` and `deliveries` are rebuilt, and
-- `attempts` with them: dropping a table that another still refers to would count its rows as
-- broken references, which no rename undoes. Each new table refers to the other new ones, and
-- the renames carry the references over to the final names.

ALTER TABLE webhooks ADD COLUMN last_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE webhooks ADD COLUMN revision BIGINT NOT NULL DEFAULT 1;

-- Event ids are unique within their wallet only.
CREATE TABLE events_rebuilt (
    id TEXT NOT NULL,
    wallet_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    ts BIGINT NOT NULL,
    data TEXT NOT NULL,
    idempotency_key TEXT,
    fingerprint TEXT,
    deliveries INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (wallet_id, id)
);
INSERT INTO events_rebuilt
    (id, wallet_id, event_type, ts, data, idempotency_key, fingerprint, deliveries, created_at)
SELECT id, wallet_id, event_type, ts, data, idempotency_key, fingerprint, deliveries, created_at
FROM events;

-- seq: an ordered webhook's own sequence; attempts_made: attempts ever recorded (see the
-- PostgreSQL migration).
CREATE TABLE deliveries_rebuilt (
    id TEXT PRIMARY KEY NOT NULL,
    event_id TEXT NOT NULL,
    webhook_id TEXT NOT NULL REFERENCES webhooks (id),
    wallet_id TEXT NOT NULL,
    state TEXT NOT NULL,
    due_at BIGINT,
    attempts INTEGER NOT NULL,
    lease_owner TEXT,
    final_at BIGINT,
    cancel_reason TEXT,
    first_due BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    seq BIGINT,
    attempts_made INTEGER NOT NULL DEFAULT 0,
    FOREIGN KEY (wallet_id, event_id) REFERENCES events_rebuilt (wallet_id, id)
);
INSERT INTO deliveries_rebuilt
    (id, event_id, webhook_id, wallet_id, state, due_at, attempts, lease_owner, final_at,
     cancel_reason, first_due, created_at, seq, attempts_made)
SELECT d.id, d.event_id, d.webhook_id, d.wallet_id, d.state, d.due_at, d.attempts,
       d.lease_owner, d.final_at, d.cancel_reason, d.first_due, d.created_at,
       CASE WHEN w.ordered THEN
           row_number() OVER (PARTITION BY d.webhook_id ORDER BY d.created_at, d.id)
       END,
       (SELECT count(*) FROM attempts AS a WHERE a.delivery_id = d.id)
FROM deliveries AS d JOIN webhooks AS w ON w.id = d.webhook_id;

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
INSERT INTO attempts_rebuilt
    (id, delivery_id, number, started_at, duration_us, outcome, status_code, response_excerpt,
     error)
SELECT id, delivery_id, number, started_at, duration_us, outcome, status_code,
       response_excerpt, error
FROM attempts;

DROP TABLE attempts;
DROP TABLE deliveries;
DROP TABLE events;
ALTER TABLE events_rebuilt RENAME TO events;
ALTER TABLE deliveries_rebuilt RENAME TO deliveries;
ALTER TABLE attempts_rebuilt RENAME TO attempts;

UPDATE webhooks SET last_seq = coalesce(
    (SELECT max(seq) FROM deliveries WHERE deliveries.webhook_id = webhooks.id), 0);

CREATE UNIQUE INDEX events_by_idempotency_key ON events (wallet_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX events_by_created_at ON events (created_at);

CREATE INDEX attempts_by_delivery ON attempts (delivery_id, id);
CREATE INDEX deliveries_by_event ON deliveries (wallet_id, event_id);
CREATE INDEX deliveries_by_webhook ON deliveries (webhook_id, created_at);
CREATE INDEX deliveries_by_wallet ON deliveries (wallet_id, created_at);
CREATE INDEX deliveries_exhausted_by_webhook ON deliveries (webhook_id, created_at)
    WHERE state = 'exhausted';
-- Claims go target by target (see the PostgreSQL migration).
CREATE INDEX deliveries_due_by_target ON deliveries (webhook_id, due_at)
    WHERE due_at IS NOT NULL;
CREATE INDEX deliveries_ordered_queue ON deliveries (webhook_id, seq)
    WHERE due_at IS NOT NULL AND seq IS NOT NULL;
