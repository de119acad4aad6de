//! Integration tests for `webhook-domain`: one binary, one module per area of the domain.
//!
//! Every time is a fixed `datetime!`; nothing here reads the clock or draws random numbers
//! outside proptest's seeded generators.
#![allow(clippy::unwrap_used)]

mod addresses;
mod circuit;
mod concurrency;
mod envelope;
mod event_data;
mod fixtures;
mod properties;
mod retry;
mod signatures;
mod targets;
mod transitions;
