//! End-to-end tests: the real service on 127.0.0.1:0 with a SQLite file in a temporary
//! directory (or a PostgreSQL schema of its own), the `webhookd` binary, real HTTP receivers
//! on 127.0.0.1:0, and a headless Chromium for the console (`browser`).
#![allow(clippy::unwrap_used, unreachable_pub)]

mod adaptive;
mod amqp;
mod amqp_restart;
mod api;
mod bad_input;
mod browser;
mod bulk_redelivery;
mod child;
mod cli;
mod console;
mod console_api;
mod console_browser;
mod crash;
mod delivery;
mod event_source;
mod extending_doc;
mod global_webhook;
mod memory_destination;
mod misbehaving_receivers;
mod nats;
mod nats_restart;
mod observability;
mod ordering;
mod outage;
mod problem_media_type;
mod rest;
mod retries;
mod roles;
mod running;
mod security;
mod sqlite_disk;
mod target_changes;
mod tenant_isolation;
mod throughput;
mod unknown_fields;
mod utils;
mod webhook_races;
