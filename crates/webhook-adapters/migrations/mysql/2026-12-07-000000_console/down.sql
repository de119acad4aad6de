ALTER TABLE events DROP KEY events_by_type;
ALTER TABLE deliveries DROP KEY deliveries_by_state;
ALTER TABLE attempts DROP KEY attempts_by_started_at, DROP KEY attempts_by_webhook,
    DROP COLUMN webhook_id;
