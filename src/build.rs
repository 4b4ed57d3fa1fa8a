//! `privy build`: run `podman build` or `buildah bud` so every RUN step gets
//! the private files, then prove with [`crate::scan`] that none of them
//! reached the image (L3).
//!
//! How the files reach RUN steps: both engines run each RUN step through an
//! OCI runtime with the hooks.d entries of their `--hooks-dir` directories
//! (by default `/usr/share/containers/oci/hooks.d` and
//! `/etc/containers/oci/hooks.d`; containers.conf's `hooks_dir` is *not*
//! read by builds; see `engines::buildah`). `--annotation` does not reach a RUN step's
//! `config.json` (it labels the image, and would publish a ticket in it),
//! so `privy build` writes a per-build hooks directory whose privy entries
//! carry the build's annotations (`io.privy.stage=build`, the upload ticket)
//! in the hook's environment ([`crate::contract::ENV_HOOK_ANNOTATIONS`]),
//! and passes it last, after the default (or the user's) directories, so
//! its entries replace privy's system ones of the same file name and every
//! other hook still runs. Plain builds without `privy build` are recognised
//! by the hook itself ([`crate::engines::buildah::is_run_step`]).
//!
//! Where the ticket is while the build runs (never in the image): in the
//! per-build hooks.d files (a 0700 directory, removed afterwards), in each
//! RUN step's `config.json` hook entry (buildah's bundle, 0600 root, gone
//! with the step) and in the hook's environment (`/proc/PID/environ` is
//! owner-only). Not on any command line.
//!
//! `--private` files go to the daemon as one build-scoped ticket
//! ([`upload_for_build`]), dropped when the build ends.
//!
//! Then: the image id (from `--iidfile`, or the engine's last output line)
//! is scanned as `containers-storage:ID` for the same private files the
//! build was given: what the configured sources return for a build-stage
//! request with the same annotations, plus the `--private` files.
//!
//! Exit status: the engine's when it fails or the image is clean; 1 on a
//! leak (and `--rm-on-leak` removes the image); 2 when privy cannot check.

use crate::config::Config;
use crate::contract::{self, Stage};
use crate::daemon::client::{Client, ClientError, OutFile};
use crate::daemon::Scope;
use crate::engines::buildah::{image_id_from_output, BuildCommand};
use crate::oci::install;
use crate::scan::{self, Needle, ScanOptions, Target};
use crate::sys::fs::PrivateDir;
use crate::sys::process::IgnoreTerminalSignals;
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("uploading the --private files to the privy daemon: {0}")]
    Upload(String),
    #[error("expected `-- podman build ARGS...` or `-- buildah bud ARGS...`{0}")]
    Engine(String),
    #[error("{0} runs RUN steps without an OCI runtime, so no hook runs and no private file reaches them; use --isolation oci")]
    Chroot(String),
    #[error("per-build hooks directory: {0}")]
    Hooks(String),
    #[error("running {program}: {error}")]
    Spawn {
        program: String,
        error: std::io::Error,
    },
    #[error("the build succeeded but privy cannot tell which image it made (no --iidfile content and no image id on the engine's last output line)")]
    NoImage,
    #[error("sources for the build: {0}")]
    Sources(String),
    #[error("scanning {target}: {msg}")]
    Scan { target: String, msg: String },
}

/// Hand the `--private` files (and the user's references) to the privy
/// daemon as one build-scoped ticket: every RUN step's hook claims it in
/// turn (`io.privy.ticket`). `None` when there is nothing to upload.
pub fn upload_for_build(
    client: &Client,
    files: &[OutFile],
    ttl: Option<u64>,
) -> Result<Option<String>, BuildError> {
    if files.is_empty() {
        return Ok(None);
    }
    let created = client
        .upload(files, Scope::Build, ttl)
        .map_err(|e| BuildError::Upload(e.to_string()))?;
    Ok(Some(created.ticket))
}

/// Drops the build's ticket when the build is over, however it ended.
struct TicketGuard<'a> {
    client: &'a Client,
    ticket: Option<String>,
}

impl Drop for TicketGuard<'_> {
    fn drop(&mut self) {
        let Some(t) = &self.ticket else { return };
        match self.client.delete(t) {
            Ok(())
            | Err(ClientError::Api {
                status: 404 | 410, ..
            }) => {}
            Err(e) => eprintln!("privy build: could not drop the build's ticket: {e}"),
        }
    }
}

/// The annotations every RUN step of this build gets.
pub fn build_annotations(ticket: Option<&str>) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert(
        contract::ANNOTATION_STAGE.to_string(),
        Stage::Build.as_str().to_string(),
    );
    if let Some(t) = ticket {
        a.insert(contract::ANNOTATION_TICKET.to_string(), t.to_string());
    }
    a
}

/// The secrets to scan for: what the configured sources give a build-stage
/// request with `annotations` (the same plugin host and checks as the
/// hook), and the `--private` files. A required source that fails fails
/// the build before it starts: privy could not prove the image clean.
pub fn needles(
    cfg: &Config,
    annotations: &BTreeMap<String, String>,
    private: Vec<OutFile>,
) -> Result<Vec<Needle>, BuildError> {
    let mut out = scan::sources::needles_from_sources(cfg, annotations.clone(), Stage::Build)
        .map_err(|e| BuildError::Sources(e.to_string()))?;
    for p in private {
        out.push(Needle::from_secret(format!("--private/{}", p.path), p.data));
    }
    Ok(out)
}

/// What `privy build` was asked to do.
#[derive(Debug)]
pub struct BuildOptions {
    /// The `--private` files and references, read as the calling user.
    pub files: Vec<OutFile>,
    /// Seconds the build's ticket may go unclaimed (`--ttl`).
    pub ttl: Option<u64>,
    pub rm_on_leak: bool,
    pub engine: Vec<String>,
    /// The privy binary the hooks run.
    pub binary: PathBuf,
    /// The config the hooks load (`--config`), if not the default.
    pub config_path: Option<PathBuf>,
}

/// Run `privy build`; returns the exit status to leave with.
pub fn build(cfg: &Config, client: &Client, opts: BuildOptions) -> Result<i32, BuildError> {
    crate::sys::process::harden();
    let cmd = BuildCommand::parse(&opts.engine).map_err(BuildError::Engine)?;
    cmd.check_isolation(std::env::var("BUILDAH_ISOLATION").ok().as_deref())
        .map_err(BuildError::Chroot)?;
    let ticket = TicketGuard {
        client,
        ticket: upload_for_build(client, &opts.files, opts.ttl)?,
    };
    let annotations = build_annotations(ticket.ticket.as_deref());
    // The scan looks for the uploads themselves; the sources run without
    // the ticket, so privy never claims it for a container that is not one.
    let needles = needles(cfg, &build_annotations(None), opts.files)?;

    let tmp = PrivateDir::new("privy-build").map_err(|e| BuildError::Hooks(e.to_string()))?;
    let hooks = tmp.path().join("hooks.d");
    let env = vec![format!(
        "{}={}",
        contract::ENV_HOOK_ANNOTATIONS,
        serde_json::to_string(&annotations).expect("json")
    )];
    install::write_hooks_d(
        &hooks,
        &install::hook_binary(&opts.binary),
        opts.config_path.as_deref(),
        &env,
    )
    .map_err(|e| BuildError::Hooks(e.to_string()))?;
    let user_iid = cmd.flag_values("--iidfile", None).pop().map(PathBuf::from);
    let our_iid = tmp.path().join("iid");
    let argv = cmd.with_privy(&hooks, user_iid.is_none().then_some(our_iid.as_path()));

    let (code, last_line) = run_engine(&argv)?;
    if code != 0 {
        return Ok(code);
    }
    let iid = std::fs::read_to_string(user_iid.as_deref().unwrap_or(&our_iid)).unwrap_or_default();
    let id = image_id_from_output(&iid)
        .or_else(|| image_id_from_output(&last_line))
        .ok_or(BuildError::NoImage)?;
    let tags = cmd.tags();
    let shown = match tags.first() {
        Some(t) => format!("{t} ({})", &id[..12]),
        None => id[..12].to_string(),
    };
    if needles.is_empty() {
        eprintln!("privy build: no private files for this build; nothing to scan {shown} for");
        return Ok(0);
    }
    let target_str = format!("containers-storage:{id}");
    let scan_err = |msg: String| BuildError::Scan {
        target: target_str.clone(),
        msg,
    };
    let target = Target::parse(&target_str).map_err(|e| scan_err(e.to_string()))?;
    let report = scan::scan(&target, &needles, &ScanOptions::default())
        .map_err(|e| scan_err(e.to_string()))?;
    if report.findings.is_empty() {
        if report.exit_code() != 0 {
            return Err(scan_err("the scan was incomplete".into()));
        }
        eprintln!(
            "privy build: {shown} is clean: no trace of {} private file(s)",
            needles.len()
        );
        return Ok(0);
    }
    eprintln!(
        "privy build: LEAK: image {shown} contains private data ({} finding(s)):",
        report.findings.len()
    );
    for f in &report.findings {
        eprintln!(
            "  {}  private file {}  match {}",
            scan::output::place(f),
            f.source,
            f.kind_label()
        );
    }
    if opts.rm_on_leak {
        let rmi = cmd.remove_image(&id);
        let out = Command::new(&rmi[0])
            .args(&rmi[1..])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => eprintln!("privy build: removed image {shown}"),
            Ok(o) => eprintln!(
                "privy build: could not remove image {shown}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => eprintln!("privy build: could not remove image {shown}: {e}"),
        }
    }
    Ok(1)
}

/// Run the engine with stdin and stderr passed through and stdout copied
/// through line by line; returns its exit status (128+signal when killed)
/// and its last non-empty stdout line.
fn run_engine(argv: &[String]) -> Result<(i32, String), BuildError> {
    use std::os::unix::process::ExitStatusExt;
    let spawn_err = |error| BuildError::Spawn {
        program: argv[0].clone(),
        error,
    };
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(spawn_err)?;
    // Ctrl-C reaches the engine too (same process group): let it stop and
    // report, then clean up after it, rather than die first and leave the
    // per-build hooks directory behind. Set after the spawn, so the engine
    // keeps the default dispositions.
    let _quiet = IgnoreTerminalSignals::new();
    let mut last = String::new();
    let mut out = std::io::stdout().lock();
    let mut reader = std::io::BufReader::new(child.stdout.take().expect("piped"));
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {
                let _ = out.write_all(&line);
                let _ = out.flush();
                let t = String::from_utf8_lossy(&line);
                if !t.trim().is_empty() {
                    last = t.trim().to_string();
                }
            }
            Err(_) => break,
        }
    }
    let status = child.wait().map_err(spawn_err)?;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    Ok((code, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_annotations_mark_the_stage_and_carry_the_ticket() {
        let a = build_annotations(Some("T"));
        assert_eq!(a["io.privy.stage"], "build");
        assert_eq!(a["io.privy.ticket"], "T");
        assert_eq!(build_annotations(None).len(), 1);
    }
}
