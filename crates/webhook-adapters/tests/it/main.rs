//! Integration tests of the adapters against the real things: SQLite files, PostgreSQL, and
//! HTTP servers on 127.0.0.1.
#![allow(clippy::unwrap_used)]

mod brokers;
mod mysql;
mod postgres;
mod query_plans;
mod schema_drift;
mod sqlite;
mod transport;
