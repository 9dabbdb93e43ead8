//! Accepting a delivery, without HTTP: the environment and its allow-list, verification, parsing or
//! quarantine, the scope check, the dedup key, and the submission to the group commit, which answers
//! only after the event's transaction committed. `http::ingest` is the thin axum route over this.

mod accept;
mod group_commit;

pub use accept::{
    header_text, record_stage, system_clock, Accepted, Arrival, Clock, IngestSettings, Intake,
};
pub use group_commit::{BatchFailed, CommitTimings, GroupCommit, GroupCommitSettings};
