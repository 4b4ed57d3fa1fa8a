//! The OCI hooks: `createRuntime` runs the pipeline (request → plan →
//! gather → materialize → audit) and fails closed on any error (L6);
//! `poststop` removes the mountpoint directories that `createRuntime` had
//! to create, so no empty `run/private` is left in a rootfs that a build
//! will commit (L3). Poststop never loads wasmtime.
//!
//! The flow is written once, here; how the planned sources become checked
//! files is a [`Gatherer`]'s business: the whole pipeline in process
//! (`pipeline::gather::InProcess`), or a node agent that holds the plugins
//! warm. [`report`] says where the hook's one error line goes.

pub mod report;
pub mod state;
pub mod thin;

pub use report::report_error;

use crate::config::Config;
use crate::oci::{OciError, State};
use crate::pipeline::audit::{self, Auditor};
use crate::pipeline::check::Checked;
use crate::pipeline::materialize::{self, MaterializeError, RealOs};
use crate::pipeline::plan::{self, PlannedSource};
use crate::pipeline::request::Request;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Turns the sources planned for a request into checked files: the part
/// of `createRuntime` that needs the plugins.
pub trait Gatherer {
    /// The checked files `planned` (never empty) give `req`, or the one
    /// line that says why not (`source "vault": ...`).
    fn gather(
        &mut self,
        cfg: &Config,
        req: &Request,
        planned: Vec<PlannedSource>,
    ) -> Result<Checked, Box<dyn std::error::Error + Send + Sync>>;
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error(transparent)]
    Oci(#[from] OciError),
    #[error("container id {0:?} is not a valid OCI id")]
    BadId(String),
    #[error("the OCI state has no pid; privy must run as a createRuntime hook")]
    NoPid,
    #[error("container user {uid}:{gid} is not mapped to the host by the container's id mappings")]
    UnmappedUser { uid: u32, gid: u32 },
    #[error("container user {uid}:{gid}: {what} {id} {why}, so no file can be owned by it; refusing before mounting")]
    InvalidOwner {
        uid: u32,
        gid: u32,
        what: &'static str,
        id: u32,
        why: &'static str,
    },
    /// The sources could not give the files (a required source failed, a
    /// check refused what one gave).
    #[error(transparent)]
    Gather(Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Materialize(#[from] MaterializeError),
    #[error("hook state {path}: {error}")]
    State {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// What poststop needs to undo, kept per container in the state dir
/// ([`state`]: the config's `state_dir` for real root). Never
/// holds file names or contents of private files: only directories created
/// in the image to mount on.
#[derive(Debug, Serialize, Deserialize)]
struct HookState {
    root: PathBuf,
    created: Vec<String>,
    /// What `privy refresh` needs to serve this container again (absent in
    /// the state of an older privy: such a container is not refreshed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    served: Option<Served>,
}

/// A container the hook served, as `privy refresh` needs it: the OCI state
/// (to re-run the original request from its bundle) and where its files
/// are. Never a file's name or bytes; a ticket annotation is left out (a
/// ticket is claimed once: see [`Served::had_ticket`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Served {
    pub id: String,
    pub bundle: PathBuf,
    pub annotations: std::collections::BTreeMap<String, String>,
    pub at: crate::pipeline::refresh::Target,
    /// The request carried a ticket (uploaded files).
    pub had_ticket: bool,
    /// When the files served expire, as the sources said (unix seconds,
    /// the earliest, clamped: [`Checked::expires`]); `None` when no source
    /// said. Updated by each successful `privy refresh`. What a refresh
    /// schedule reads to fetch again before then.
    #[serde(default)]
    pub expires: Option<u64>,
}

impl Served {
    /// The OCI state the runtime gave `createRuntime`, as far as kept.
    pub fn oci_state(&self) -> State {
        State {
            id: self.id.clone(),
            pid: Some(self.at.pid),
            bundle: self.bundle.clone(),
            annotations: self.annotations.clone(),
        }
    }
}

/// The record of container `id`, if this hook served it and kept one.
pub fn served(cfg: &Config, id: &str) -> Result<Option<Served>, HookError> {
    let Some(path) = state::find(cfg, &state_file(id)) else {
        return Ok(None);
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(HookError::State { path, error }),
    };
    let st: HookState = serde_json::from_slice(&bytes).map_err(|e| HookError::State {
        path: path.clone(),
        error: std::io::Error::other(e),
    })?;
    Ok(st.served)
}

/// Record that container `id`'s files now expire at `expires` (after a
/// refresh gave it a new set). Nothing happens when the container has no
/// record here: one its poststop removed, even while this runs, is never
/// made again.
pub fn set_expires(cfg: &Config, id: &str, expires: Option<u64>) -> Result<(), HookError> {
    let Some(path) = state::find(cfg, &state_file(id)) else {
        return Ok(());
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(HookError::State { path, error }),
    };
    let mut st: HookState = serde_json::from_slice(&bytes).map_err(|e| HookError::State {
        path: path.clone(),
        error: std::io::Error::other(e),
    })?;
    let Some(served) = st.served.as_mut() else {
        return Ok(());
    };
    if served.expires == expires {
        return Ok(());
    }
    served.expires = expires;
    match write_state_at(&path, &st, true) {
        // Its poststop removed the record meanwhile: it stays removed.
        Err(HookError::State { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => {
            Ok(())
        }
        r => r,
    }
}

/// The ids of every container with a state file here (for `--all`).
pub fn served_ids(cfg: &Config) -> Vec<String> {
    let mut ids: Vec<String> = state::candidates_here(cfg)
        .into_iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".json")
                .filter(|id| crate::oci::valid_id(id))
                .map(str::to_owned)
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// What one `createRuntime` did, for callers and tests.
#[derive(Debug, Default)]
pub struct Outcome {
    pub files: usize,
    pub bytes: u64,
    pub created: Vec<String>,
}

fn state_file(id: &str) -> String {
    format!("{id}.json")
}

/// The file a refresh of container `id` holds an exclusive `flock` on, so
/// the node agent and `privy refresh` never refresh one container at the
/// same time: next to its state file (`ID.lock`), removed by poststop.
/// `None` when privy keeps no state for it.
pub fn refresh_lock(cfg: &Config, id: &str) -> Option<PathBuf> {
    state_path(cfg, id).map(|p| p.with_extension("lock"))
}

/// Where container `id`'s state file is, if privy keeps one here.
pub fn state_path(cfg: &Config, id: &str) -> Option<PathBuf> {
    state::find(cfg, &state_file(id))
}

/// The `createRuntime` hook: what `gatherer` gives the container named by
/// the OCI state on `stdin`, put into it.
pub fn create_runtime(
    cfg: &Config,
    stdin: &[u8],
    gatherer: &mut dyn Gatherer,
) -> Result<Outcome, HookError> {
    let started = std::time::Instant::now();
    let state = State::parse(stdin)?;
    if !crate::oci::valid_id(&state.id) {
        return Err(HookError::BadId(state.id));
    }
    let req = Request::load(state)?;
    let planned = plan::plan(cfg, &req);
    if planned.is_empty() {
        tracing::debug!(container = %req.container_id, "no source applies");
        return Ok(Outcome::default());
    }
    let checked = gatherer
        .gather(cfg, &req, planned)
        .map_err(HookError::Gather)?;
    let fetched_at = started.elapsed();
    if checked.files.is_empty() {
        audit::emit_dropped(&req, &checked);
        tracing::info!(target: crate::contract::AUDIT_TARGET, container = %req.container_id, "no private files to inject");
        return Ok(Outcome::default());
    }
    let owner = req.host_owner().ok_or(HookError::UnmappedUser {
        uid: req.user.uid,
        gid: req.user.gid,
    })?;
    check_owner(req.user.uid, req.user.gid, owner)?;
    let pid = req.pid.ok_or(HookError::NoPid)?;
    // The init's start time, read before entering: what `privy refresh`
    // checks so it never enters a reused pid.
    let start_time = crate::sys::process::start_time(pid).ok();
    let created = materialize::inject_into(
        pid,
        &req.root,
        &cfg.target,
        &checked.files,
        owner,
        req.mount_label.as_deref(),
    )?;
    let materialized_at = started.elapsed();
    let served = start_time.map(|start_time| {
        let mut annotations = req.annotations.clone();
        let had_ticket = annotations
            .remove(crate::contract::ANNOTATION_TICKET)
            .is_some();
        Served {
            id: req.container_id.clone(),
            bundle: req.bundle.clone(),
            annotations,
            at: crate::pipeline::refresh::Target {
                pid,
                start_time,
                target: cfg.target.clone(),
                owner,
            },
            had_ticket,
            expires: checked.expires,
        }
    });
    // Kept for poststop (the directories to remove) and for `privy
    // refresh` (how to serve the container again).
    write_state(
        cfg,
        &req.container_id,
        &HookState {
            root: req.root.clone(),
            created: created.clone(),
            served,
        },
    )?;
    let auditor = Auditor::load_or_create(&cfg.audit_key);
    let timing = audit::Timing {
        fetch: fetched_at,
        materialize: materialized_at - fetched_at,
        total: started.elapsed(),
    };
    audit::emit(&auditor, &req, &checked, &cfg.target, timing);
    Ok(Outcome {
        files: checked.files.len(),
        bytes: checked.total_bytes(),
        created,
    })
}

/// Whether `id` is a value privy's user namespace can give a file, per
/// `map` (the text of `/proc/self/uid_map` or `gid_map`); why not otherwise.
pub fn owner_problem(id: u32, map: &str) -> Option<&'static str> {
    if id == u32::MAX {
        // (uid_t)-1 means "no change" to chown and is refused by the kernel
        // as an owner: without this check the tmpfs mount fails with a bare
        // `Invalid argument`.
        return Some("is -1 (4294967295), which the kernel reserves to mean \"no id\"");
    }
    let mapped = map.lines().any(|l| {
        let f: Vec<u64> = l
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        f.len() == 3 && (f[0]..f[0] + f[2]).contains(&(id as u64))
    });
    (!mapped).then_some("is not mapped in privy's own user namespace")
}

/// Refuse an owner the tmpfs could not be given, with a line that says so
/// (before anything is mounted), instead of the kernel's `EINVAL`.
fn check_owner(uid: u32, gid: u32, (huid, hgid): (u32, u32)) -> Result<(), HookError> {
    for (what, id, map) in [
        ("host user id", huid, "/proc/self/uid_map"),
        ("host group id", hgid, "/proc/self/gid_map"),
    ] {
        let text = std::fs::read_to_string(map).unwrap_or_default();
        if let Some(why) = owner_problem(id, &text) {
            return Err(HookError::InvalidOwner {
                uid,
                gid,
                what,
                id,
                why,
            });
        }
    }
    Ok(())
}

fn write_state(cfg: &Config, id: &str, st: &HookState) -> Result<(), HookError> {
    // Real root: the config's state_dir, made 0700 (its shared parents
    // 0755: `/run/privy` also holds the daemon's socket, which every local
    // user must reach, B6). Not real root: a directory of the user's own
    // (see `state`), never a root-owned one.
    let dir =
        state::dir_for_writing(cfg).map_err(|(path, error)| HookError::State { path, error })?;
    write_state_at(&dir.join(state_file(id)), st, false)
}

/// Write `st` to `path`; with `replace_only`, only over a record that is
/// still there.
fn write_state_at(
    path: &std::path::Path,
    st: &HookState,
    replace_only: bool,
) -> Result<(), HookError> {
    let err = |error| HookError::State {
        path: path.to_owned(),
        error,
    };
    // Replaced whole (never truncated and rewritten in place), so a hook
    // that dies midway leaves the old state or the new, never a torn one.
    // No fsync: a reboot ends the container.
    let opts = crate::sys::WriteOpts {
        mode: Some(0o600),
        sync: false,
        replace_only,
    };
    crate::sys::write_atomic(
        path,
        &serde_json::to_vec(st).expect("state serializes"),
        opts,
    )
    .map_err(err)
}

/// The `poststop` hook: remove what `createRuntime` created in the rootfs.
pub fn poststop(cfg: &Config, stdin: &[u8]) -> Result<(), HookError> {
    let state = State::parse(stdin)?;
    if !crate::oci::valid_id(&state.id) {
        return Err(HookError::BadId(state.id));
    }
    let Some(path) = state::find(cfg, &state_file(&state.id)) else {
        return Ok(());
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(HookError::State { path, error }),
    };
    let st: HookState = serde_json::from_slice(&bytes).map_err(|e| HookError::State {
        path: path.clone(),
        error: std::io::Error::other(e),
    })?;
    let state_err = |error| HookError::State {
        path: st.root.clone(),
        error,
    };
    let mut os = RealOs::new().map_err(state_err)?;
    materialize::cleanup(&mut os, &st.root, &st.created).map_err(state_err)?;
    // A refresh may have left its lock file (empty); gone with the state.
    let _ = std::fs::remove_file(path.with_extension("lock"));
    std::fs::remove_file(&path).map_err(|error| HookError::State { path, error })?;
    tracing::debug!(container = %state.id, removed = ?st.created, "poststop cleaned up");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn invalid_or_unmapped_owners_are_named_before_mounting() {
        let init = "         0          0 4294967295\n";
        assert_eq!(super::owner_problem(0, init), None);
        assert_eq!(super::owner_problem(4294967294, init), None);
        assert!(super::owner_problem(u32::MAX, init)
            .unwrap()
            .contains("reserves"));
        let rootless = "0 1000 1\n1 100000 65536\n";
        assert_eq!(super::owner_problem(65536, rootless), None);
        assert!(super::owner_problem(65537, rootless)
            .unwrap()
            .contains("not mapped"));
        let e = super::check_owner(u32::MAX, 0, (u32::MAX, 0))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("container user 4294967295:0: host user id 4294967295 is -1"),
            "{e}"
        );
    }
}
