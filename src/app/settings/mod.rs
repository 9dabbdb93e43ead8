//! The configuration turned into the settings and clients the service runs with. `config` holds
//! plain, deserialized settings and imports nothing above it; building a [`crate::handlers`] spec,
//! the dispatcher's settings, the Voltage API client from them happens
//! here, in the composition root, so `config` never depends on what it configures.

mod handlers;
mod reconcile;

use crate::config::positive;
