//! Integration tests of the adapters against the real things: SQLite files, PostgreSQL, HTTP
//! servers on 127.0.0.1, and the NATS and RabbitMQ servers of the machine.
#![allow(clippy::unwrap_used)]

mod brokers;
mod mysql;
mod postgres;
mod query_plans;
mod schema_drift;
mod sources;
mod sqlite;
mod transport;
