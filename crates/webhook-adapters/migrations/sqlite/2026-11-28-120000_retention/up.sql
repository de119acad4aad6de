-- Retention prunes the oldest events first.
CREATE INDEX events_by_created_at ON events (created_at);
