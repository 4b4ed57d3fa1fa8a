//! `privy refresh`: serve a running container again. For a container the
//! hook served (its record in the hook state, [`crate::hook::Served`]),
//! re-run the original request through [`gather`](super::gather) (plan,
//! fetch, check: the same sources, limits and precedence as at start),
//! then hand the checked set to a refresh child
//! ([`privy_core::pipeline::refresh`]), which applies only the difference
//! inside the container, and emit one `refreshed` audit event (names,
//! sizes, keyed fingerprints of what changed; never a value). The
//! record's expiry ([`Served::expires`]) becomes what the sources said
//! this time.
//!
//! Any failure before the child renames a file (a source down, a check
//! refusing, the container gone) leaves the container's files as they
//! were. A container whose request carried a ticket is not refreshed: the
//! ticket was claimed once at start and its uploads are in the container
//! only; re-running the request without it would take them away, so its
//! files stay as they are (one line says so).

use super::audit::Auditor;
use super::gather::{self, GatherError};

use super::request::Request;
use crate::config::Config;
use crate::contract::{ANNOTATION_TICKET, AUDIT_TARGET, EVENT_REFRESHED};
use crate::hook::{self, HookError, Served};
pub use privy_core::pipeline::refresh::{
    apply_via_child, child_main, Changes, RefreshError, Target, CHILD_SUBCOMMAND,
};
use serde::Serialize;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("container {0}: privy has no record of serving it here (not started with privy's hook, already stopped, or served by an older privy)")]
    NotServed(String),
    #[error("container {id}: its files came with an upload ticket, which is claimed once; its files are kept as they are")]
    Ticketed { id: String },
    #[error("container {id}: {error}")]
    State { id: String, error: Box<HookError> },
    #[error("container {id}: {error}")]
    Request {
        id: String,
        error: crate::oci::OciError,
    },
    #[error("container {id}: {error}; its files are unchanged")]
    Gather { id: String, error: GatherError },
    #[error("container {id}: {error}")]
    Apply { id: String, error: RefreshError },
}

/// One changed or added file in the `refreshed` event.
#[derive(Debug, Serialize)]
pub struct ChangedRecord {
    pub path: String,
    pub source: String,
    pub size: usize,
    pub fingerprint: String,
}

/// The `refreshed` audit event: names, sizes, keyed fingerprints.
#[derive(Debug, Serialize)]
pub struct RefreshedEvent<'a> {
    pub container: &'a str,
    pub target: &'a str,
    pub changed: Vec<ChangedRecord>,
    pub added: Vec<ChangedRecord>,
    pub removed: &'a [String],
    pub unchanged: usize,
    /// When the new files expire, as the sources said (unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    pub fetch_us: u64,
    pub total_us: u64,
}

/// Refresh container `id` now. `exe` is the privy binary to run the child
/// with (`/proc/self/exe` for the CLI).
pub fn refresh(cfg: &Config, id: &str, exe: &Path) -> Result<Changes, RotateError> {
    let started = std::time::Instant::now();
    let served: Served = hook::served(cfg, id)
        .map_err(|error| RotateError::State {
            id: id.to_owned(),
            error: Box::new(error),
        })?
        .ok_or_else(|| RotateError::NotServed(id.to_owned()))?;
    if served.had_ticket {
        return Err(RotateError::Ticketed { id: id.to_owned() });
    }
    // Not entered, not even fetched for, when the container is gone.
    match crate::sys::process::start_time(served.at.pid) {
        Ok(s) if s == served.at.start_time => {}
        found => {
            return Err(RotateError::Apply {
                id: id.to_owned(),
                error: RefreshError::Stopped {
                    pid: served.at.pid,
                    recorded: served.at.start_time,
                    found: found.ok(),
                },
            })
        }
    }
    let req = Request::load(served.oci_state()).map_err(|error| RotateError::Request {
        id: id.to_owned(),
        error,
    })?;
    if req.annotations.contains_key(ANNOTATION_TICKET) {
        return Err(RotateError::Ticketed { id: id.to_owned() });
    }
    // Every source counts as required here: an optional source that fails
    // at start is skipped (the container starts without its files), but at
    // a refresh skipping it would take its files away; a failure must
    // leave them as they are.
    let mut planned = super::plan::plan(cfg, &req);
    for p in &mut planned {
        p.required = true;
    }
    let got = gather::gather_planned(cfg, planned, &req).map_err(|error| RotateError::Gather {
        id: id.to_owned(),
        error,
    })?;
    let changes = apply_via_child(exe, &served.at, &got.checked.files).map_err(|error| {
        RotateError::Apply {
            id: id.to_owned(),
            error,
        }
    })?;
    let auditor = Auditor::load_or_create(&cfg.audit_key);
    let record = |p: &String| {
        let f = got
            .checked
            .files
            .iter()
            .find(|f| f.path.as_str() == p)
            .expect("a changed path is one of the checked files");
        ChangedRecord {
            path: p.clone(),
            source: f.source.clone(),
            size: f.data.len(),
            fingerprint: auditor.fingerprint(f.data.expose()),
        }
    };
    let event = RefreshedEvent {
        container: id,
        target: &served.at.target,
        changed: changes.changed.iter().map(record).collect(),
        added: changes.added.iter().map(record).collect(),
        removed: &changes.removed,
        unchanged: changes.unchanged,
        expires: got.checked.expires,
        fetch_us: got.fetch_time.as_micros() as u64,
        total_us: started.elapsed().as_micros() as u64,
    };
    emit(&event);
    // What a schedule reads next: when the files just written expire.
    // The files are in place either way; a record that cannot be written
    // is said in one line, and the next refresh writes it again.
    if let Err(e) = hook::set_expires(cfg, id, got.checked.expires) {
        tracing::warn!(container = %id, "refreshed, but its expiry was not recorded: {e}");
    }
    Ok(changes)
}

fn emit(event: &RefreshedEvent<'_>) {
    use crate::logging::Level;
    if crate::logging::sink().is_some() {
        let enabled = tracing::enabled!(target: AUDIT_TARGET, tracing::Level::INFO);
        crate::logging::event(enabled, Level::Info, AUDIT_TARGET, EVENT_REFRESHED, event);
        return;
    }
    tracing::info!(
        target: AUDIT_TARGET,
        container = %event.container,
        refreshed = %serde_json::to_string(event).expect("audit event serializes"),
        "{}",
        EVENT_REFRESHED
    );
}

/// Every container this host's hook state has a record of.
pub fn served_ids(cfg: &Config) -> Vec<String> {
    hook::served_ids(cfg)
}
