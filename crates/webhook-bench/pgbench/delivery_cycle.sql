-- The raw SQL ceiling of the PostgreSQL adapter (issue 16): one pgbench transaction is one
-- delivery cycle of an unordered webhook of one wallet, the row work the adapter does for each
-- delivery, statement for statement, a batch of :batch deliveries at a time:
--
-- 1. publish (`EventOutbox::publish_batch`, one transaction): look for earlier publishes of
--    the batch's event ids, read the wallet's live targets FOR KEY SHARE, insert the events
--    and their deliveries, NOTIFY the dispatchers;
-- 2. claim (`DeliveryQueue::claim_due`, one statement): the target's earliest due rows,
--    FOR UPDATE SKIP LOCKED, leased to this client, returned with their event and webhook;
-- 3. record a 200 for each (`DeliveryQueue::record_attempts`, one transaction): the
--    deliveries' new state, guarded by the lease, and their attempt rows.
--
-- Raw SQL may do what the adapter could: each transaction goes as one pipeline (one round
-- trip), statements are prepared once (run with --protocol=prepared), and row values are
-- built by the server from a few parameters instead of one parameter per column and row (new
-- ids too: the adapter's client makes them). Left out, as not the row work of a delivery:
-- the claim's walk over every target with something due and its cancelling of a deleted or
-- disabled target's rows (this script knows its one target, and checks that it is live), and
-- the test query the adapter's pool ran on each check-out until it was dropped. Added: settings of the session, that
-- carry the claimed ids from the claim to the record step (the adapter's client does), and
-- keep the planner off sequential scans (see below).
--
-- Variables (pgbench -D): wallet and webhook, the ids of a wallet and of its one webhook,
-- unordered and enabled; batch, the deliveries per cycle (the dispatcher's 64); data, the
-- events' data (JSON text). The schema must be the adapter's (`PgStore::migrate`): run it
-- with `webhookd-bench ceiling` or `cargo xtask bench`, see docs/performance.md.

-- Event ids are derived from this cycle's random seed, so that the statements of the publish
-- agree on them without a round trip.
\set seed random(1, 9223372036854775806)

-- First the session's settings. No sequential scans: prepared statements keep the generic plan
-- made on the fresh schema's first rows, which reads the whole deliveries table to update 64
-- of them long after it has grown (the adapter's claim and writes are planned at each run, on
-- the table as it is). And the claim's ids of the last cycle are forgotten: a claim that takes
-- nothing may not set them (PostgreSQL skips the other side of a join with an empty side),
-- and must leave nothing to record.
\startpipeline
SELECT set_config('enable_seqscan', 'off', false),
       set_config('ceiling.ids', '{}', false), set_config('ceiling.first_dues', '{}', false);
BEGIN;
SELECT id, wallet_id, fingerprint, deliveries, idempotency_key FROM events
WHERE (wallet_id = ANY(ARRAY[:wallet::uuid])
       AND id = ANY(ARRAY(SELECT md5(:seed::text || '/' || n)::uuid
                          FROM generate_series(1, :batch::int) AS n)))
   OR (wallet_id = ANY(ARRAY[:wallet::uuid]) AND idempotency_key = ANY('{}'::text[]));
SELECT id, wallet_id, url, custom_headers, event_types, signing_keys, retry_policy, enabled,
       ordered, rate_limit, created_at, revision
FROM webhooks
WHERE deleted_at IS NULL AND enabled AND (wallet_id = :wallet::uuid OR wallet_id IS NULL)
FOR KEY SHARE;
INSERT INTO events (id, wallet_id, event_type, ts, data, deliveries, created_at)
SELECT md5(:seed::text || '/' || n)::uuid, :wallet::uuid, 'ConnectionUpdated', t.now_us,
       :data::text, 1, t.now_us
FROM generate_series(1, :batch::int) AS n,
     (SELECT (extract(epoch FROM now()) * 1000000)::int8) AS t (now_us)
ON CONFLICT DO NOTHING;
INSERT INTO deliveries (id, event_id, webhook_id, wallet_id, state, due_at, attempts,
                        attempts_made, first_due, created_at)
SELECT gen_random_uuid(), md5(:seed::text || '/' || n)::uuid, :webhook::uuid,
       :wallet::uuid, 'pending', t.now_us, 0, 0, t.now_us, t.now_us
FROM generate_series(1, :batch::int) AS n,
     (SELECT (extract(epoch FROM now()) * 1000000)::int8) AS t (now_us);
NOTIFY webhookd_due;
COMMIT;
\endpipeline

-- The claim returns the rows the adapter's does (each with its event and webhook). The next
-- step needs their ids, which the adapter sends back as arrays; pgbench keeps one row only,
-- so the claim keeps the arrays in settings of the session instead. A lease of 60 s.
WITH taken AS (
    SELECT d.id, d.due_at, d.state FROM deliveries AS d
    WHERE d.webhook_id = :webhook::uuid
      AND d.due_at <= (extract(epoch FROM now()) * 1000000)::int8
      AND EXISTS (SELECT 1 FROM webhooks AS w
                  WHERE w.id = :webhook::uuid AND w.enabled AND w.deleted_at IS NULL)
    ORDER BY d.due_at
    LIMIT :batch::int
    FOR UPDATE OF d SKIP LOCKED
),
claimed AS (
    UPDATE deliveries
    SET state = 'in_flight', due_at = (extract(epoch FROM now()) * 1000000)::int8 + 60000000,
        lease_owner = 'pgbench-' || :client_id::text
    WHERE id = ANY(ARRAY(SELECT t.id FROM taken AS t ORDER BY t.due_at LIMIT :batch::int))
    RETURNING id, event_id, webhook_id, wallet_id, attempts, attempts_made, first_due
),
kept AS (
    SELECT set_config('ceiling.ids', coalesce(array_agg(c.id)::text, '{}'), false),
           set_config('ceiling.first_dues', coalesce(array_agg(c.first_due)::text, '{}'), false)
    FROM claimed AS c
)
SELECT c.id, c.event_id, c.webhook_id, t.state, t.due_at, c.attempts, c.attempts_made,
       c.first_due,
       e.wallet_id AS event_wallet_id, e.event_type, e.ts AS event_ts, e.data AS event_data,
       w.wallet_id AS webhook_wallet_id, w.url, w.custom_headers, w.event_types,
       w.signing_keys, w.retry_policy, w.enabled, w.ordered, w.rate_limit,
       w.created_at AS webhook_created_at, w.revision AS webhook_revision
FROM claimed AS c
JOIN taken AS t ON t.id = c.id
JOIN events AS e ON e.wallet_id = c.wallet_id AND e.id = c.event_id
JOIN webhooks AS w ON w.id = c.webhook_id
CROSS JOIN kept
ORDER BY t.due_at, c.id;

-- Every outcome is the same 200, so the columns the adapter sends as one array per column
-- (outcomes differ there) are constants here; the rows written are the same. The adapter
-- inserts attempts only for the rows its update returned: all of them, when no lease was lost.
\startpipeline
BEGIN;
UPDATE deliveries AS d
SET state = 'delivered', due_at = NULL, attempts = 1, lease_owner = NULL,
    final_at = t.now_us, cancel_reason = NULL, first_due = v.first_due, attempts_made = 1
FROM unnest(current_setting('ceiling.ids')::uuid[],
            current_setting('ceiling.first_dues')::int8[]) AS v (id, first_due),
     (SELECT (extract(epoch FROM now()) * 1000000)::int8) AS t (now_us)
WHERE d.id = v.id AND d.state = 'in_flight' AND d.lease_owner = 'pgbench-' || :client_id::text
RETURNING d.id;
INSERT INTO attempts (delivery_id, number, started_at, duration_us, outcome, status_code,
                      webhook_id)
SELECT v.id, 1, t.now_us, 1000, 'response', 200, d.webhook_id
FROM unnest(current_setting('ceiling.ids')::uuid[]) AS v (id)
     JOIN deliveries AS d ON d.id = v.id,
     (SELECT (extract(epoch FROM now()) * 1000000)::int8) AS t (now_us);
COMMIT;
\endpipeline
