DROP INDEX deliveries_ordered_queue;
DROP INDEX deliveries_due_by_target;
CREATE INDEX deliveries_claimable ON deliveries (due_at) WHERE due_at IS NOT NULL;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_event_fkey;
DROP INDEX deliveries_by_event;
CREATE INDEX deliveries_by_event ON deliveries (event_id);
ALTER TABLE events DROP CONSTRAINT events_pkey;
ALTER TABLE events ADD PRIMARY KEY (id);
ALTER TABLE deliveries ADD CONSTRAINT deliveries_event_id_fkey
    FOREIGN KEY (event_id) REFERENCES events (id);
ALTER TABLE deliveries DROP COLUMN attempts_made;
ALTER TABLE deliveries DROP COLUMN seq;
ALTER TABLE webhooks DROP COLUMN revision;
ALTER TABLE webhooks DROP COLUMN last_seq;
