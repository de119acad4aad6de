-- Per-target delivery settings: strict ordering and a rate limit (attempts per second).
ALTER TABLE webhooks ADD COLUMN ordered BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE webhooks ADD COLUMN rate_limit INTEGER;
