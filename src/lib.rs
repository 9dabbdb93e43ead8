//! `voltage-webhooks`: receives Voltage Payments webhooks, verifies each delivery's signature in
//! constant time, stores each event exactly once in PostgreSQL, and acknowledges only after the
//! commit.
//!
//! The modules follow the path of one delivery: [`http`] (the only module that knows axum) hands
//! raw bytes and headers to [`verify`]; verified bytes are parsed and keyed by [`event`]; [`store`]
//! commits them. [`config`] loads and validates settings and secrets; [`app`] assembles the service.
//! Nothing here parses a body before it is verified, and nothing answers 2xx before a commit.

pub mod app;
pub mod auth;
pub mod config;
pub mod error_code;
pub mod event;
pub mod handlers;
pub mod http;
pub mod ingest;
pub mod outbox;
pub mod reconcile;
pub mod retention;
pub mod retry;
pub mod store;
pub mod telemetry;
pub mod verify;
pub mod voltage_api;
