-- Back to ids as text (the down of native_ids).
ALTER TABLE api_keys DROP CONSTRAINT api_keys_wallet_id_fkey;
ALTER TABLE webhooks DROP CONSTRAINT webhooks_wallet_id_fkey;
ALTER TABLE entities DROP CONSTRAINT entities_wallet_id_fkey;
ALTER TABLE redelivery_jobs DROP CONSTRAINT redelivery_jobs_wallet_id_fkey;
ALTER TABLE redelivery_jobs DROP CONSTRAINT redelivery_jobs_webhook_id_fkey;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_webhook_id_fkey;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_event_fkey;
ALTER TABLE attempts DROP CONSTRAINT attempts_delivery_id_fkey;

ALTER TABLE wallets ALTER COLUMN id TYPE text USING id::text;
ALTER TABLE api_keys ALTER COLUMN wallet_id TYPE text USING wallet_id::text;
ALTER TABLE entities
    ALTER COLUMN id TYPE text USING id::text,
    ALTER COLUMN wallet_id TYPE text USING wallet_id::text;
ALTER TABLE webhooks
    ALTER COLUMN id TYPE text USING id::text,
    ALTER COLUMN wallet_id TYPE text USING wallet_id::text;
ALTER TABLE redelivery_jobs
    ALTER COLUMN id TYPE text USING id::text,
    ALTER COLUMN wallet_id TYPE text USING wallet_id::text,
    ALTER COLUMN webhook_id TYPE text USING webhook_id::text;
ALTER TABLE events
    ALTER COLUMN id TYPE text USING id::text,
    ALTER COLUMN wallet_id TYPE text USING wallet_id::text;
ALTER TABLE deliveries
    ALTER COLUMN id TYPE text USING id::text,
    ALTER COLUMN event_id TYPE text USING event_id::text,
    ALTER COLUMN webhook_id TYPE text USING webhook_id::text,
    ALTER COLUMN wallet_id TYPE text USING wallet_id::text;
ALTER TABLE attempts ALTER COLUMN delivery_id TYPE text USING delivery_id::text;

ALTER TABLE api_keys ADD CONSTRAINT api_keys_wallet_id_fkey
    FOREIGN KEY (wallet_id) REFERENCES wallets (id) ON DELETE CASCADE;
ALTER TABLE webhooks ADD CONSTRAINT webhooks_wallet_id_fkey
    FOREIGN KEY (wallet_id) REFERENCES wallets (id);
ALTER TABLE entities ADD CONSTRAINT entities_wallet_id_fkey
    FOREIGN KEY (wallet_id) REFERENCES wallets (id);
ALTER TABLE redelivery_jobs ADD CONSTRAINT redelivery_jobs_wallet_id_fkey
    FOREIGN KEY (wallet_id) REFERENCES wallets (id);
ALTER TABLE redelivery_jobs ADD CONSTRAINT redelivery_jobs_webhook_id_fkey
    FOREIGN KEY (webhook_id) REFERENCES webhooks (id);
ALTER TABLE deliveries ADD CONSTRAINT deliveries_webhook_id_fkey
    FOREIGN KEY (webhook_id) REFERENCES webhooks (id);
ALTER TABLE deliveries ADD CONSTRAINT deliveries_event_fkey
    FOREIGN KEY (wallet_id, event_id) REFERENCES events (wallet_id, id);
ALTER TABLE attempts ADD CONSTRAINT attempts_delivery_id_fkey
    FOREIGN KEY (delivery_id) REFERENCES deliveries (id);
