-- The whole schema of webhookd on MySQL 8 / MariaDB 10.6+, as the PostgreSQL and SQLite
-- migrations leave it: the same tables and columns (times as BIGINT microseconds since the
-- epoch, structured settings as JSON text). Ids are hyphenated lower-case text in CHAR(36)
-- with a binary collation, which orders them as PostgreSQL orders its `uuid`s; other text is
-- utf8mb4 compared byte for byte, as on the other backends.
--
-- MySQL has no partial indexes. Where the others index only unfinished deliveries
-- (`due_at IS NOT NULL`), the index here holds every row with `due_at` in it: finished rows
-- have a NULL `due_at`, which sorts first, so a range read `due_at > x` or `due_at <= now`
-- (and `IS NOT NULL`) skips them in one descent. Where a read walks several targets, or one
-- target's sequence, the index begins with `unfinished` (a generated column, `due_at IS NOT
-- NULL`), which puts the finished rows apart, as a partial index leaves them out.

CREATE TABLE wallets (
    id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE api_keys (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    wallet_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    tag VARBINARY(64) NOT NULL,
    salt VARBINARY(64) NOT NULL,
    digest VARBINARY(64) NOT NULL,
    created_at BIGINT NOT NULL,
    KEY api_keys_by_tag (tag),
    CONSTRAINT api_keys_wallet_id_fkey FOREIGN KEY (wallet_id) REFERENCES wallets (id)
        ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE webhooks (
    id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    wallet_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NULL,
    url TEXT NOT NULL,
    custom_headers MEDIUMTEXT NOT NULL,
    event_types MEDIUMTEXT NULL,
    signing_keys MEDIUMTEXT NULL,
    retry_policy TEXT NULL,
    enabled BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    deleted_at BIGINT NULL,
    ordered BOOLEAN NOT NULL DEFAULT FALSE,
    rate_limit INTEGER NULL,
    last_seq BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL DEFAULT 1,
    -- PostgreSQL's partial index of live webhooks: listings filter `deleted_at IS NULL`
    -- within the wallet, in creation order.
    KEY webhooks_live_by_wallet (wallet_id, deleted_at, created_at),
    CONSTRAINT webhooks_wallet_id_fkey FOREIGN KEY (wallet_id) REFERENCES wallets (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE events (
    id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    wallet_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    event_type VARCHAR(255) NOT NULL,
    ts BIGINT NOT NULL,
    data LONGTEXT NOT NULL,
    idempotency_key VARCHAR(255) NULL,
    fingerprint VARCHAR(255) NULL,
    deliveries INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (wallet_id, id),
    -- A unique index allows any number of NULLs: keys are unique where there is one.
    UNIQUE KEY events_by_idempotency_key (wallet_id, idempotency_key),
    KEY events_by_created_at (created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE deliveries (
    id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    event_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    webhook_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    wallet_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    state VARCHAR(32) NOT NULL,
    due_at BIGINT NULL,
    attempts INTEGER NOT NULL,
    lease_owner VARCHAR(255) NULL,
    final_at BIGINT NULL,
    cancel_reason VARCHAR(64) NULL,
    first_due BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    seq BIGINT NULL,
    attempts_made INTEGER NOT NULL DEFAULT 0,
    -- Whether the delivery is unfinished (has a due time): the first column of the indexes
    -- that stand in for the others' partial ones. Invisible, and not in the shared schema
    -- module: only MySQL's claims name it.
    unfinished BOOLEAN AS (due_at IS NOT NULL) VIRTUAL INVISIBLE,
    -- First, so that InnoDB checks the foreign keys on webhook_id through them: their
    -- columns never change, so updating a delivery's state never re-checks its webhook (a
    -- shared lock on the webhook's row, which would make claims and outcomes wait for
    -- publishes and deletes of the target).
    KEY deliveries_by_webhook (webhook_id, created_at),
    KEY deliveries_by_event (wallet_id, event_id),
    -- Each target's due rows, and its leases in flight.
    KEY deliveries_due_by_target (webhook_id, due_at),
    -- The claim's loose scan of the targets with unfinished rows: one descent per target,
    -- never through finished rows.
    KEY deliveries_unfinished_by_target (unfinished, webhook_id, due_at),
    -- An ordered target's queue: its first unfinished row by sequence in one descent, past
    -- any number of finished ones.
    KEY deliveries_ordered_queue (webhook_id, unfinished, seq),
    -- The backlog: unfinished rows by due time.
    KEY deliveries_claimable (due_at),
    KEY deliveries_by_wallet (wallet_id, created_at),
    -- PostgreSQL's partial index of exhausted rows, for redelivery jobs.
    KEY deliveries_exhausted_by_webhook (webhook_id, state, created_at),
    CONSTRAINT deliveries_webhook_id_fkey FOREIGN KEY (webhook_id) REFERENCES webhooks (id),
    CONSTRAINT deliveries_event_fkey FOREIGN KEY (wallet_id, event_id)
        REFERENCES events (wallet_id, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE attempts (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    delivery_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    number INTEGER NOT NULL,
    started_at BIGINT NOT NULL,
    duration_us BIGINT NOT NULL,
    outcome VARCHAR(64) NOT NULL,
    status_code INTEGER NULL,
    response_excerpt MEDIUMTEXT NULL,
    error MEDIUMTEXT NULL,
    KEY attempts_by_delivery (delivery_id, id),
    CONSTRAINT attempts_delivery_id_fkey FOREIGN KEY (delivery_id) REFERENCES deliveries (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE entities (
    id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    wallet_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT entities_wallet_id_fkey FOREIGN KEY (wallet_id) REFERENCES wallets (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE admin_token (
    id BIGINT NOT NULL PRIMARY KEY,
    tag VARBINARY(64) NOT NULL,
    salt VARBINARY(64) NOT NULL,
    digest VARBINARY(64) NOT NULL,
    created_at BIGINT NOT NULL,
    CONSTRAINT admin_token_one_row CHECK (id = 1)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE redelivery_jobs (
    id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    wallet_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    webhook_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    since BIGINT NOT NULL,
    until BIGINT NOT NULL,
    state VARCHAR(32) NOT NULL,
    total BIGINT NOT NULL,
    requeued BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    stop_reason VARCHAR(64) NULL,
    KEY redelivery_jobs_by_state (state, created_at),
    CONSTRAINT redelivery_jobs_wallet_id_fkey FOREIGN KEY (wallet_id) REFERENCES wallets (id),
    CONSTRAINT redelivery_jobs_webhook_id_fkey FOREIGN KEY (webhook_id) REFERENCES webhooks (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
