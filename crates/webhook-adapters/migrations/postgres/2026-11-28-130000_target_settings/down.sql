ALTER TABLE webhooks DROP COLUMN rate_limit;
ALTER TABLE webhooks DROP COLUMN ordered;
