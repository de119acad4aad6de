-- The web console's reads (issue 18): see the PostgreSQL migration. No foreign key on the
-- attempts' webhook: InnoDB would share-lock the webhook's row for every outcome written.
ALTER TABLE attempts ADD COLUMN webhook_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NULL;
UPDATE attempts AS a JOIN deliveries AS d ON d.id = a.delivery_id SET a.webhook_id = d.webhook_id;
ALTER TABLE attempts
    MODIFY webhook_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    ADD KEY attempts_by_webhook (webhook_id, started_at),
    ADD KEY attempts_by_started_at (started_at);
-- InnoDB's secondary indexes end with the primary key: (wallet_id, state, created_at, id)
-- gives the search its order (created_at, id) without a sort.
ALTER TABLE deliveries ADD KEY deliveries_by_state (wallet_id, state, created_at);
ALTER TABLE events ADD KEY events_by_type (wallet_id, event_type, created_at);
