//! `privy-hook`: the binary the runtimes execute on every container start.
//! It links this crate alone (no WebAssembly engine, no async runtime, no
//! TLS, no argument parser), so a start that gets nothing costs about what
//! `/bin/true` costs.
//!
//! createRuntime: read the state, plan locally (no source applies: leave at
//! once, never touching the socket), ask the node agent (`privy daemon`)
//! for the checked files, materialize, audit, leave. poststop: the same
//! cleanup as `privy hook poststop` (no state file: leave at once).
//!
//! When no agent answers, the pipeline runs in process: this hook execs
//! `privy hook create-runtime` (the `privy` next to it) with the same state
//! on its standard input, so injection never depends on a daemon:
//!
//! | the agent                                | what the hook does |
//! |------------------------------------------|--------------------|
//! | answers with files (or none)             | materializes them (or nothing) |
//! | answers with an error line               | fails with that line (L6) |
//! | is absent: no socket, connection refused | execs `privy hook`; notes it in the log once while the agent stays away |
//! | does not serve this caller (non-root), or serves another config file | execs `privy hook`, which runs with the caller's own rights and config |
//! | silent past `daemon.hook_budget_ms`, dies mid-answer, or is at its connection caps | says so naming the socket; then execs `privy hook`, unless the container has an upload: a ticket lives only in the agent's memory, so it fails closed |
//!
//! Nothing is mounted until a whole answer has arrived and passed its
//! checks, so an agent killed or stopped mid-request never leaves a
//! container with part of its files.

use super::{create_runtime, poststop, report_error, Gatherer};
use crate::config::{Config, Precedence};
use crate::contract;
use crate::daemon::client::{Client, ClientError};
use crate::daemon::proto::HOOK_NOT_SERVED;
use crate::pipeline::check::Checked;
use crate::pipeline::plan::PlannedSource;
use crate::pipeline::request::Request;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The hook's arguments: `[--config PATH] [hook] create-runtime|poststop`,
/// the same shape `privy` takes, so a hooks.d entry or bundle written for
/// either binary differs only in its `path`.
#[derive(Debug, PartialEq)]
pub struct Args {
    pub config: Option<PathBuf>,
    pub create: bool,
}

impl Args {
    /// Parse by hand (no argument parser is linked); one line on error.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Args, String> {
        let mut config = None;
        let mut stage = None;
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let s = a.to_string_lossy();
            if s == "--config" {
                config = Some(PathBuf::from(it.next().ok_or("--config needs a path")?));
            } else if let Some(p) = s.strip_prefix("--config=") {
                config = Some(PathBuf::from(p));
            } else if s == "hook" && stage.is_none() {
                continue;
            } else if stage.is_none()
                && (s == contract::HOOK_CREATE_RUNTIME || s == contract::HOOK_POSTSTOP)
            {
                stage = Some(s == contract::HOOK_CREATE_RUNTIME);
            } else {
                return Err(format!(
                    "unexpected argument {:?}; usage: privy-hook [--config PATH] hook create-runtime|poststop",
                    crate::shown::shown(&s)
                ));
            }
        }
        let create = stage
            .ok_or("no stage; usage: privy-hook [--config PATH] hook create-runtime|poststop")?;
        Ok(Args { config, create })
    }

    /// The config file and whether it was named (a named one must exist).
    fn config_path(&self) -> (PathBuf, bool) {
        match &self.config {
            Some(p) => (p.clone(), true),
            None => match std::env::var_os(contract::ENV_CONFIG) {
                Some(p) if !p.is_empty() => (p.into(), true),
                _ => (contract::DEFAULT_CONFIG_PATH.into(), false),
            },
        }
    }
}

/// Run the hook; the exit status the runtime sees (0: the container may
/// start; 1: it must not).
pub fn main() -> u8 {
    crate::sys::process::harden();
    let args = match Args::parse(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => return fail(&format!("privy: {e}"), false),
    };
    let (path, explicit) = args.config_path();
    let cfg = match Config::load(&path, explicit) {
        Ok(c) => c,
        Err(e) => return fail(&format!("privy: {e}"), false),
    };
    let sink = crate::logging::install(
        crate::logging::Sink::open(&cfg.log_file).unwrap_or_else(crate::logging::Sink::stderr),
    );
    crate::logging::LineSubscriber::from_env(tracing::Level::INFO).install();
    let to_file = sink.is_file();
    let mut stdin = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
        return fail(&format!("privy: reading OCI state from stdin: {e}"), false);
    }
    let result = if args.create {
        let mut agent = Agent {
            args: &args,
            state: &stdin,
        };
        create_runtime(&cfg, &stdin, &mut agent).map(drop)
    } else {
        poststop(&cfg, &stdin)
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            if to_file && args.create {
                tracing::error!("createRuntime failed: {e}");
            }
            fail(&format!("privy: {e}"), true)
        }
    }
}

fn fail(line: &str, hook: bool) -> u8 {
    let line = line.replace('\n', " ");
    if hook {
        report_error(&line);
    } else {
        use std::io::Write;
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
    1
}

/// The gatherer that asks the node agent.
struct Agent<'a> {
    args: &'a Args,
    /// The state exactly as the runtime sent it (re-fed to `privy hook`).
    state: &'a [u8],
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Gatherer for Agent<'_> {
    fn gather(
        &mut self,
        cfg: &Config,
        _req: &Request,
        planned: Vec<PlannedSource>,
    ) -> Result<Checked, BoxError> {
        let socket = cfg.daemon.socket_path();
        let client = Client::new(&socket, Duration::from_millis(cfg.daemon.hook_budget_ms));
        let env = std::env::var(contract::ENV_HOOK_ANNOTATIONS).ok();
        let (path, _) = self.args.config_path();
        let path = std::path::absolute(&path).unwrap_or(path);
        match client.hook(self.state, env.as_deref(), Some(&path)) {
            Ok(checked) => {
                absent_note(cfg, &socket, false);
                Ok(checked)
            }
            Err(ClientError::NotRunning(_)) => {
                absent_note(cfg, &socket, true);
                Err(in_process(self.args, self.state))
            }
            Err(ClientError::Api { status, .. }) if status == HOOK_NOT_SERVED => {
                Err(in_process(self.args, self.state))
            }
            // The agent's own line: a source failed or a check refused.
            Err(ClientError::Api { status, message }) if status != 503 && status != 408 => {
                Err(message.into())
            }
            // Silent past the budget, gone mid-answer, or too busy to
            // take the request (503, 408).
            Err(e) => {
                if let Some(up) = planned.iter().find(|p| p.precedence == Precedence::Upload) {
                    return Err(format!(
                        "{e}; source {:?} (an upload) is held only by the agent, so the container must not start without it",
                        up.name
                    )
                    .into());
                }
                tracing::warn!("{e}; running the configured sources in the hook's own process");
                Err(in_process(self.args, self.state))
            }
        }
    }
}

/// Where the hook remembers that it has said the agent is absent, so a
/// host without an agent gets one line, not one per container.
fn absent_marker(cfg: &Config) -> PathBuf {
    cfg.state_dir.join("agent-absent")
}

/// Note in the log, once while the agent stays away, that hooks run the
/// pipeline in process; forget it when the agent answers again.
fn absent_note(cfg: &Config, socket: &Path, absent: bool) {
    let marker = absent_marker(cfg);
    if !absent {
        let _ = std::fs::remove_file(&marker);
        return;
    }
    let first = crate::sys::fs::ensure_dir(&cfg.state_dir, 0o700).is_ok()
        && std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&marker)
            .is_ok();
    if first {
        tracing::warn!(
            socket = %socket.display(),
            "no privy agent answers on its socket; hooks run the pipeline in their own process until one does"
        );
    }
}

/// Exec `privy hook create-runtime` (the `privy` next to this binary) with
/// the same arguments and the state on its standard input. Returns only
/// when that cannot be done: the error the container fails with.
fn in_process(args: &Args, state: &[u8]) -> BoxError {
    match exec_privy(args, state) {
        Ok(never) => match never {},
        Err(e) => e.into(),
    }
}

fn exec_privy(args: &Args, state: &[u8]) -> Result<std::convert::Infallible, String> {
    use std::os::unix::process::CommandExt;
    let me = std::fs::read_link("/proc/self/exe")
        .map_err(|e| format!("cannot find privy next to the hook: /proc/self/exe: {e}"))?;
    let privy = me.with_file_name("privy");
    let stdin = state_fd(state).map_err(|e| format!("cannot pass the OCI state on: {e}"))?;
    let mut cmd = std::process::Command::new(&privy);
    cmd.arg0("privy");
    if let Some(c) = &args.config {
        cmd.arg("--config").arg(c);
    }
    cmd.args(["hook", contract::HOOK_CREATE_RUNTIME]);
    cmd.stdin(stdin);
    let e = cmd.exec();
    Err(format!(
        "running the pipeline in process: {}: {e}",
        privy.display()
    ))
}

/// An in-memory file holding `state`, read from its start (what `privy
/// hook` reads as its standard input). A pipe would block past 64 KiB.
fn state_fd(state: &[u8]) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::io::{Seek, Write};
    use std::os::fd::FromRawFd;
    // SAFETY: memfd_create with a NUL-terminated name and constant flags.
    let fd = unsafe { libc::memfd_create(c"privy-oci-state".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    f.write_all(state)?;
    f.rewind()?;
    Ok(f.into())
}

#[cfg(test)]
mod tests {
    use super::Args;

    fn parse(a: &[&str]) -> Result<Args, String> {
        Args::parse(a.iter().map(|s| s.into()))
    }

    #[test]
    fn the_three_argument_shapes_and_nothing_else() {
        assert_eq!(
            parse(&["hook", "create-runtime"]).unwrap(),
            Args {
                config: None,
                create: true
            }
        );
        assert_eq!(
            parse(&["--config", "/etc/p.toml", "hook", "poststop"]).unwrap(),
            Args {
                config: Some("/etc/p.toml".into()),
                create: false
            }
        );
        assert_eq!(
            parse(&["--config=/x.toml", "create-runtime"]).unwrap(),
            Args {
                config: Some("/x.toml".into()),
                create: true
            }
        );
        assert!(parse(&["hook"]).unwrap_err().contains("no stage"));
        assert!(parse(&["hook", "prestart"])
            .unwrap_err()
            .contains("unexpected argument"));
        assert!(parse(&["--config"]).unwrap_err().contains("needs a path"));
        assert!(parse(&["create-runtime", "poststop"]).is_err());
    }
}
