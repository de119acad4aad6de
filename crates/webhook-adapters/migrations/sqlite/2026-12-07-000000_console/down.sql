DROP INDEX events_by_type;
DROP INDEX deliveries_by_state;
DROP INDEX attempts_by_started_at;
DROP INDEX attempts_by_webhook;
ALTER TABLE attempts DROP COLUMN webhook_id;
