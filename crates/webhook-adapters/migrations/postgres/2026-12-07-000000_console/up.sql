-- The web console's reads (issue 18): the delivery search, a webhook's attempt statistics and
-- the attempts of the last minute.
--
-- Attempts carry their delivery's webhook, copied at insert (a delivery never changes target),
-- so that a webhook's attempts in a time window are one range of an index instead of a join
-- through every delivery of the webhook. No foreign key: its check would take a share lock on
-- the webhook's row for every outcome written, and make outcomes wait for webhook changes,
-- which lock that row FOR UPDATE. Attempts are insert-only, so their two new indexes cost one
-- entry each per attempt and never an update.
ALTER TABLE attempts ADD COLUMN webhook_id uuid;
UPDATE attempts AS a SET webhook_id = d.webhook_id FROM deliveries AS d WHERE d.id = a.delivery_id;
ALTER TABLE attempts ALTER COLUMN webhook_id SET NOT NULL;
CREATE INDEX attempts_by_webhook ON attempts (webhook_id, started_at);
CREATE INDEX attempts_by_started_at ON attempts (started_at);

-- The search by state, newest first. Deliveries are written three times each and none of
-- their updates is HOT, so each index here costs on every write: this is the one delivery
-- index the search adds. By wallet alone it reads deliveries_by_wallet, by webhook
-- deliveries_by_webhook, and by event type the new events index below, joined to deliveries
-- through deliveries_by_event (a delivery is created with its event, at the same time).
CREATE INDEX deliveries_by_state ON deliveries (wallet_id, state, created_at);
CREATE INDEX events_by_type ON events (wallet_id, event_type, created_at);
