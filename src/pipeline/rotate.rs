//! `privy refresh`: serve a running container again. For a container the
//! hook served (its record in the hook state, [`crate::hook::Served`]),
//! re-run the original request through [`gather`] (plan,
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
//!
//! One refresh at a time per container: each holds an exclusive `flock`
//! on the container's lock file ([`crate::hook::refresh_lock`]), so the
//! node agent's scheduler (`daemon::rotation`) and `privy refresh` never
//! interleave. The CLI waits for it ([`Wait::Block`]); the agent skips a
//! container whose lock is held and tries at its next slot ([`Wait::Skip`]).
//! A refresh that fails (a source, a check, entering the container)
//! emits one `refresh-failed` audit event (container, source, cause).

use super::audit::Auditor;
use super::gather::{self, GatherError};

use super::plan::PlannedSource;
use super::request::Request;
use crate::config::Config;
use crate::contract::{ANNOTATION_TICKET, AUDIT_TARGET, EVENT_REFRESHED, EVENT_REFRESH_FAILED};
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
    #[error("container {id}: another refresh of it is running; skipped")]
    Busy { id: String },
    #[error("container {id}: refresh lock {path}: {error}")]
    Lock {
        id: String,
        path: std::path::PathBuf,
        error: std::io::Error,
    },
}

impl RotateError {
    /// The source that failed, when one did.
    pub fn failed_source(&self) -> Option<&str> {
        use super::check::CheckError;
        match self {
            RotateError::Gather {
                error: GatherError::Fetch(f),
                ..
            } => Some(&f.name),
            RotateError::Gather {
                error: GatherError::Check(CheckError::Path { name, .. }),
                ..
            } => Some(name),
            _ => None,
        }
    }

    /// The container is gone (or its pid is another process's now): not an
    /// error for a scheduler, which forgets it.
    pub fn is_stopped(&self) -> bool {
        matches!(
            self,
            RotateError::Apply {
                error: RefreshError::Stopped { .. },
                ..
            } | RotateError::NotServed(_)
        )
    }
}

/// Whether a refresh waits for another refresh of the same container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Wait, then refresh (`privy refresh`: the caller wants it done now).
    Block,
    /// Give up at once with [`RotateError::Busy`] (the agent's scheduler:
    /// the other refresh gives the container the same files).
    Skip,
}

/// How planned sources become checked files: a plugin host made for the
/// call ([`gather::gather_planned`]) or the agent's warm plugins.
pub type Gather<'a> =
    dyn FnMut(&Config, Vec<PlannedSource>, &Request) -> Result<gather::Gathered, GatherError> + 'a;

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

/// Refresh container `id` now, with a plugin host made for this call,
/// waiting for a refresh of it in progress. `exe` is the privy binary to
/// run the child with (`/proc/self/exe` for the CLI).
pub fn refresh(cfg: &Config, id: &str, exe: &Path) -> Result<Changes, RotateError> {
    refresh_with(cfg, id, exe, Wait::Block, &mut gather::gather_planned)
}

/// Refresh container `id` with `gather`, holding its refresh lock (as
/// `wait` says); a failure other than a stopped container or a held lock
/// is audited (`refresh-failed`).
pub fn refresh_with(
    cfg: &Config,
    id: &str,
    exe: &Path,
    wait: Wait,
    gather: &mut Gather<'_>,
) -> Result<Changes, RotateError> {
    let lock = lock(cfg, id, wait)?;
    let result = refresh_locked(cfg, id, exe, gather, &lock);
    if let Err(e) = &result {
        if !e.is_stopped() && !matches!(e, RotateError::Ticketed { .. }) {
            emit_failed(id, e);
        }
    }
    result
}

/// The container's refresh lock, held until dropped.
fn lock(cfg: &Config, id: &str, wait: Wait) -> Result<std::fs::File, RotateError> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let path = hook::refresh_lock(cfg, id).ok_or_else(|| RotateError::NotServed(id.to_owned()))?;
    let err = |error| RotateError::Lock {
        id: id.to_owned(),
        path: path.clone(),
        error,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(err)?;
    let op = match wait {
        Wait::Block => libc::LOCK_EX,
        Wait::Skip => libc::LOCK_EX | libc::LOCK_NB,
    };
    loop {
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(file);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Err(RotateError::Busy { id: id.to_owned() }),
            _ => return Err(err(e)),
        }
    }
}

fn refresh_locked(
    cfg: &Config,
    id: &str,
    exe: &Path,
    gather: &mut Gather<'_>,
    lock: &std::fs::File,
) -> Result<Changes, RotateError> {
    use std::os::unix::fs::FileExt;
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
    let got = gather(cfg, planned, &req).map_err(|error| RotateError::Gather {
        id: id.to_owned(),
        error,
    })?;
    // The lock file holds what the last refresh applied: this container
    // (pid, start time) and the keyed fingerprint of the whole set. The
    // same again needs no child: nothing else writes to the container's
    // read-only mount. Cleared before applying, written after it worked,
    // so a refresh that failed midway is never taken for a complete one.
    let auditor = Auditor::load_or_create(&cfg.audit_key);
    let applied = format!(
        "{} {} {}\n",
        served.at.pid,
        served.at.start_time,
        auditor.set_fingerprint(&got.checked.files)
    );
    let mut had = vec![0u8; applied.len() + 1];
    let lock_err = |error| RotateError::Lock {
        id: id.to_owned(),
        path: hook::refresh_lock(cfg, id).unwrap_or_default(),
        error,
    };
    let same = lock.read_at(&mut had, 0).map_err(lock_err)? == applied.len()
        && had[..applied.len()] == *applied.as_bytes();
    let changes = if same {
        Changes {
            unchanged: got.checked.files.len(),
            ..Changes::default()
        }
    } else {
        lock.set_len(0).map_err(lock_err)?;
        let changes = apply_via_child(exe, &served.at, &got.checked.files).map_err(|error| {
            RotateError::Apply {
                id: id.to_owned(),
                error,
            }
        })?;
        lock.write_all_at(applied.as_bytes(), 0).map_err(lock_err)?;
        changes
    };
    // What a schedule reads next: when the files just written expire (a
    // source may renew a lease without changing a byte). The files are in
    // place either way; a record that cannot be written is said in one
    // line, and the next refresh writes it again.
    if got.checked.expires != served.expires {
        if let Err(e) = hook::set_expires(cfg, id, got.checked.expires) {
            tracing::warn!(container = %id, "refreshed, but its expiry was not recorded: {e}");
        }
    }
    if changes.is_empty() {
        return Ok(changes);
    }
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

/// The `refresh-failed` audit event: names and the cause, never a value
/// (no error privy writes carries one, L7).
#[derive(Debug, Serialize)]
pub struct FailedEvent<'a> {
    pub container: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'a str>,
    pub cause: String,
}

fn emit_failed(id: &str, e: &RotateError) {
    use crate::logging::Level;
    let event = FailedEvent {
        container: id,
        source: e.failed_source(),
        cause: e.to_string(),
    };
    if crate::logging::sink().is_some() {
        let enabled = tracing::enabled!(target: AUDIT_TARGET, tracing::Level::WARN);
        crate::logging::event(
            enabled,
            Level::Warn,
            AUDIT_TARGET,
            EVENT_REFRESH_FAILED,
            &event,
        );
        return;
    }
    tracing::warn!(
        target: AUDIT_TARGET,
        container = %id,
        refresh_failed = %serde_json::to_string(&event).expect("audit event serializes"),
        "{}",
        EVENT_REFRESH_FAILED
    );
}

/// Every container this host's hook state has a record of.
pub fn served_ids(cfg: &Config) -> Vec<String> {
    hook::served_ids(cfg)
}
