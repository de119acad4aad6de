-- The REST API's tables: IAM entities, the admin token, and bulk redelivery jobs. Same
-- portable column types as the init migration.

CREATE TABLE entities (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    wallet_id TEXT NOT NULL REFERENCES wallets (id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- At most one row, id 1: of several instances starting together, the first insert wins and
-- the others insert nothing.
CREATE TABLE admin_token (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    tag BLOB NOT NULL,
    salt BLOB NOT NULL,
    digest BLOB NOT NULL,
    created_at BIGINT NOT NULL
);

-- since and until bound the creation time of the deliveries a job requeues, [since, until).
CREATE TABLE redelivery_jobs (
    id TEXT PRIMARY KEY NOT NULL,
    wallet_id TEXT NOT NULL REFERENCES wallets (id),
    webhook_id TEXT NOT NULL REFERENCES webhooks (id),
    since BIGINT NOT NULL,
    until BIGINT NOT NULL,
    state TEXT NOT NULL,
    total BIGINT NOT NULL,
    requeued BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX redelivery_jobs_by_state ON redelivery_jobs (state, created_at);

-- A job's step reads a target's exhausted deliveries in a window of creation times. Exhausted
-- rows are few, so this index is small and costs nothing to the claims and outcomes of
-- unfinished rows; its predicate is the literal the step's query repeats.
CREATE INDEX deliveries_exhausted_by_webhook ON deliveries (webhook_id, created_at)
    WHERE state = 'exhausted';
