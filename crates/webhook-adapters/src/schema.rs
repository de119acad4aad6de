//! The diesel schema, one for both backends: the PostgreSQL and SQLite migrations declare the
//! same tables with the same column types (times as BIGINT microseconds since the epoch,
//! structured settings as JSON text), except ids: native `uuid` on PostgreSQL, text on SQLite,
//! both the schema's [`Id`](crate::sql_id::Id) type. So row conversion is shared.
//! `tests/it/schema_drift.rs` fails when a migration and this module disagree.

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_id::Id;

    wallets (id) {
        id -> Id,
        name -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_id::Id;

    api_keys (id) {
        id -> BigInt,
        wallet_id -> Id,
        tag -> Binary,
        salt -> Binary,
        digest -> Binary,
        created_at -> BigInt,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_id::Id;

    webhooks (id) {
        id -> Id,
        wallet_id -> Nullable<Id>,
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
    use diesel::sql_types::*;
    use crate::sql_id::Id;

    events (wallet_id, id) {
        id -> Id,
        wallet_id -> Id,
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
    use diesel::sql_types::*;
    use crate::sql_id::Id;

    deliveries (id) {
        id -> Id,
        event_id -> Id,
        webhook_id -> Id,
        wallet_id -> Id,
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
    use diesel::sql_types::*;
    use crate::sql_id::Id;

    attempts (id) {
        id -> BigInt,
        delivery_id -> Id,
        number -> Integer,
        started_at -> BigInt,
        duration_us -> BigInt,
        outcome -> Text,
        status_code -> Nullable<Integer>,
        response_excerpt -> Nullable<Text>,
        error -> Nullable<Text>,
        webhook_id -> Id,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_id::Id;

    entities (id) {
        id -> Id,
        name -> Text,
        wallet_id -> Id,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_id::Id;

    admin_token (id) {
        id -> BigInt,
        tag -> Binary,
        salt -> Binary,
        digest -> Binary,
        created_at -> BigInt,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_id::Id;

    redelivery_jobs (id) {
        id -> Id,
        wallet_id -> Id,
        webhook_id -> Id,
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
