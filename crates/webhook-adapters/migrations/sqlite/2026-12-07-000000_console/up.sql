-- The web console's reads (issue 18): see the PostgreSQL migration. SQLite adds a NOT NULL
-- column only with a default, so attempts are rebuilt with their delivery's webhook.
CREATE TABLE attempts_rebuilt (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    delivery_id TEXT NOT NULL REFERENCES deliveries (id),
    number INTEGER NOT NULL,
    started_at BIGINT NOT NULL,
    duration_us BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    status_code INTEGER,
    response_excerpt TEXT,
    error TEXT,
    webhook_id TEXT NOT NULL
);
INSERT INTO attempts_rebuilt
    (id, delivery_id, number, started_at, duration_us, outcome, status_code, response_excerpt,
     error, webhook_id)
SELECT a.id, a.delivery_id, a.number, a.started_at, a.duration_us, a.outcome, a.status_code,
       a.response_excerpt, a.error, d.webhook_id
FROM attempts AS a JOIN deliveries AS d ON d.id = a.delivery_id;
DROP TABLE attempts;
ALTER TABLE attempts_rebuilt RENAME TO attempts;
CREATE INDEX attempts_by_delivery ON attempts (delivery_id, id);
CREATE INDEX attempts_by_webhook ON attempts (webhook_id, started_at);
CREATE INDEX attempts_by_started_at ON attempts (started_at);

CREATE INDEX deliveries_by_state ON deliveries (wallet_id, state, created_at);
CREATE INDEX events_by_type ON events (wallet_id, event_type, created_at);
