//! The diesel schema, one for both backends: the PostgreSQL and SQLite migrations declare the
//! same tables with the same portable column types (ids as UUID text, times as BIGINT
//! microseconds since the epoch, structured settings as JSON text), so row conversion is shared.
//! `tests/it/schema_drift.rs` fails when a migration and this module disagree.

diesel::table! {
    wallets (id) {
        id -> Text,
        name -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    api_keys (id) {
        id -> BigInt,
        wallet_id -> Text,
        tag -> Binary,
        salt -> Binary,
        digest -> Binary,
        created_at -> BigInt,
    }
}

diesel::table! {
    webhooks (id) {
        id -> Text,
        wallet_id -> Nullable<Text>,
        url -> Text,
        custom_headers -> Text,
        event_types -> Nullable<Text>,
        signing_keys -> Nullable<Text>,
        retry_policy -> Nullable<Text>,
        enabled -> Bool,
        created_at -> BigInt,
        deleted_at -> Nullable<BigInt>,
        ordered -> Bool,
        rate_limit -> Nullable<Integer>,
        last_seq -> BigInt,
        revision -> BigInt,
    }
}

diesel::table! {
    events (wallet_id, id) {
        id -> Text,
        wallet_id -> Text,
        event_type -> Text,
        ts -> BigInt,
        data -> Text,
        idempotency_key -> Nullable<Text>,
        fingerprint -> Nullable<Text>,
        deliveries -> Integer,
        created_at -> BigInt,
    }
}

diesel::table! {
    deliveries (id) {
        id -> Text,
        event_id -> Text,
        webhook_id -> Text,
        wallet_id -> Text,
        state -> Text,
        due_at -> Nullable<BigInt>,
        attempts -> Integer,
        lease_owner -> Nullable<Text>,
        final_at -> Nullable<BigInt>,
        cancel_reason -> Nullable<Text>,
        first_due -> BigInt,
        created_at -> BigInt,
        seq -> Nullable<BigInt>,
        attempts_made -> Integer,
    }
}

diesel::table! {
    attempts (id) {
        id -> BigInt,
        delivery_id -> Text,
        number -> Integer,
        started_at -> BigInt,
        duration_us -> BigInt,
        outcome -> Text,
        status_code -> Nullable<Integer>,
        response_excerpt -> Nullable<Text>,
        error -> Nullable<Text>,
    }
}

diesel::table! {
    entities (id) {
        id -> Text,
        name -> Text,
        wallet_id -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    admin_token (id) {
        id -> BigInt,
        tag -> Binary,
        salt -> Binary,
        digest -> Binary,
        created_at -> BigInt,
    }
}

diesel::table! {
    redelivery_jobs (id) {
        id -> Text,
        wallet_id -> Text,
        webhook_id -> Text,
        since -> BigInt,
        until -> BigInt,
        state -> Text,
        total -> BigInt,
        requeued -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
        stop_reason -> Nullable<Text>,
    }
}

diesel::joinable!(api_keys -> wallets (wallet_id));
diesel::joinable!(entities -> wallets (wallet_id));
diesel::joinable!(redelivery_jobs -> webhooks (webhook_id));
diesel::joinable!(deliveries -> webhooks (webhook_id));
diesel::joinable!(attempts -> deliveries (delivery_id));

diesel::allow_tables_to_appear_in_same_query!(
    wallets,
    api_keys,
    webhooks,
    events,
    deliveries,
    attempts,
    entities,
    admin_token,
    redelivery_jobs
);
