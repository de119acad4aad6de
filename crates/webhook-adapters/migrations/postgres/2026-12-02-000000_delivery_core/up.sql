-- The delivery core (issue 14): strict order for ordered webhooks, claims that go target by
-- target, atomic webhook updates, attempt numbers that survive redelivery, and event ids
-- scoped to their wallet.

-- Ordered webhooks: each delivery to one gets the next number of the webhook's own sequence,
-- drawn inside the publishing transaction while it holds the webhook row's lock, so that the
-- numbers follow the order in which the publishes commit. NULL for other webhooks.
ALTER TABLE webhooks ADD COLUMN last_seq BIGINT NOT NULL DEFAULT 0;
-- Every change of a webhook's settings or state adds one: updates compare and set it.
ALTER TABLE webhooks ADD COLUMN revision BIGINT NOT NULL DEFAULT 1;
ALTER TABLE deliveries ADD COLUMN seq BIGINT;
-- Attempts with a recorded outcome since the delivery was created; unlike `attempts` (the
-- current retry budget's count, which a redelivery starts again at 0) it never goes back.
ALTER TABLE deliveries ADD COLUMN attempts_made INTEGER NOT NULL DEFAULT 0;

UPDATE deliveries AS d SET attempts_made = a.n
FROM (SELECT delivery_id, count(*)::int AS n FROM attempts GROUP BY delivery_id) AS a
WHERE a.delivery_id = d.id;

WITH numbered AS (
    SELECT d.id, row_number() OVER (PARTITION BY d.webhook_id ORDER BY d.created_at, d.id) AS n
    FROM deliveries AS d JOIN webhooks AS w ON w.id = d.webhook_id
    WHERE w.ordered
)
UPDATE deliveries AS d SET seq = numbered.n FROM numbered WHERE d.id = numbered.id;
UPDATE webhooks AS w SET last_seq = s.last
FROM (SELECT webhook_id, max(seq) AS last FROM deliveries GROUP BY webhook_id) AS s
WHERE s.webhook_id = w.id AND s.last IS NOT NULL;

-- Event ids are unique within their wallet only.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_event_id_fkey;
ALTER TABLE events DROP CONSTRAINT events_pkey;
ALTER TABLE events ADD PRIMARY KEY (wallet_id, id);
DROP INDEX deliveries_by_event;
CREATE INDEX deliveries_by_event ON deliveries (wallet_id, event_id);
ALTER TABLE deliveries ADD CONSTRAINT deliveries_event_fkey
    FOREIGN KEY (wallet_id, event_id) REFERENCES events (wallet_id, id);

-- Claims find the targets with unfinished deliveries (one index descent each), then each
-- target's due rows, or an ordered target's first row by sequence: none of them walks past
-- another target's backlog. They replace the index of every unfinished row by due time.
DROP INDEX deliveries_claimable;
CREATE INDEX deliveries_due_by_target ON deliveries (webhook_id, due_at)
    WHERE due_at IS NOT NULL;
CREATE INDEX deliveries_ordered_queue ON deliveries (webhook_id, seq)
    WHERE due_at IS NOT NULL AND seq IS NOT NULL;
