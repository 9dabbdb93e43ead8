//! The integration tests: one binary, a module per area, so the dependency tree links once.
//! Every test talks to the real PostgreSQL (`DATABASE_URL`) and, where it matters, the real
//! NATS server; only what lies outside the service (Voltage's API, a downstream HTTP service)
//! is faked by a local server.
#![allow(clippy::unwrap_used)]

mod common;

mod api_access;
mod api_contract;
mod api_queries;
mod api_stream;
mod attempt_history;
mod builtin_handlers;
mod cli;
mod config;
mod config_handlers;
mod confirm;
mod dedup_migration;
mod dispatch;
mod docs;
mod fanout_guarantees;
mod faults;
mod group_commit;
mod ingest_storage;
mod ingest_verification;
mod loadgen;
mod metrics;
mod protection;
mod query_plans;
mod reconcile;
mod reload;
mod retention;
mod secrets_in_logs;
mod shutdown;
mod signature_properties;
mod slow_clients;
