//! `privy run` and `privy upload` as a library: read private files as the
//! calling user, hand them to the daemon, attach the ticket to a container
//! and run it, then drop the ticket when the container is gone.
//!
//! Files come from `--private SRC:DEST` and from the user's references in
//! `$XDG_CONFIG_HOME/privy/privy.toml` (`[[private]] src, dest`); a
//! `--private` beats a reference with the same `DEST` ([`spec`], [`read`],
//! [`collect`]). The ticket reaches the container as the annotation
//! `io.privy.ticket` (podman, docker), in the bundle's `config.json` (runc,
//! crun with `--bundle`), or as the container's `PRIVY_TICKET` environment
//! variable where the engine has no annotations (`buildah run`)
//! ([`mod@attach`]); [`child`] runs the command.

pub mod attach;
pub mod child;
pub mod read;
pub mod spec;

pub use attach::{
    attach, attach_bundle, is_foreground_runtime_run, passes_annotations, restore_bundle, Route,
};
pub use child::run as run_child;
pub use read::read_all;
pub use spec::{load_references, merge, references_path, Spec};

use crate::contract::ENV_TICKET;
use crate::daemon::client::{Client, ClientError, OutFile};
use crate::daemon::{Created, Scope};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("--private {0:?}: expected SRC:DEST (SRC may be `-` for stdin)")]
    Spec(String),
    #[error("destination {dest:?}: {error}")]
    Dest {
        dest: String,
        error: crate::secret::PathError,
    },
    #[error("{0}: given twice as a destination")]
    Duplicate(String),
    #[error("{src}: {error}")]
    Read { src: String, error: std::io::Error },
    #[error("{src}: not a regular file")]
    NotFile { src: String },
    #[error("{src}: larger than limits.max_file_bytes ({max} bytes)")]
    TooLarge { src: String, max: u64 },
    #[error("`-` (stdin) may be given only once")]
    StdinTwice,
    #[error("{path}: {msg}")]
    References { path: PathBuf, msg: String },
    #[error(transparent)]
    Daemon(#[from] ClientError),
    #[error("bundle {path}: {msg}")]
    Bundle { path: PathBuf, msg: String },
    #[error("{0}: cannot run it: {1}")]
    Spawn(String, std::io::Error),
}

/// Upload `files`.
pub fn upload(
    client: &Client,
    files: &[OutFile],
    scope: Scope,
    ttl: Option<u64>,
) -> Result<Created, UploadError> {
    Ok(client.upload(files, scope, ttl)?)
}

/// `--private` specs over the user's references (unless `no_references`),
/// read as the calling user, each at most `limits.max_file_bytes`.
pub fn collect(
    cfg: &crate::config::Config,
    private: &[String],
    no_references: bool,
) -> Result<Vec<OutFile>, UploadError> {
    let flags = private
        .iter()
        .map(|s| Spec::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let refs = match (no_references, references_path()) {
        (false, Some(p)) => load_references(&p)?,
        _ => Vec::new(),
    };
    read_all(&merge(flags, refs)?, cfg.limits.max_file_bytes)
}

/// The privy binary and config a bundle's hooks run (`privy run --bundle`).
#[derive(Debug, Clone)]
pub struct Hooks {
    pub binary: PathBuf,
    /// `--config`, when it is not the default.
    pub config: Option<PathBuf>,
}

/// A `privy run` ready to start: the files uploaded as a run ticket, which
/// is attached to the command (or to the bundle's `config.json`). No
/// `Debug`: the ticket is a capability, never printed.
pub struct Prepared<'a> {
    client: &'a Client,
    ticket: String,
    cmd: Vec<String>,
    route: Route,
    /// The bundle and its original `config.json`, to put back.
    restore: Option<(PathBuf, Vec<u8>)>,
}

/// Upload `files` for one run and attach the ticket to `cmd`, or to
/// `bundle`'s `config.json` (adding privy's hooks there, if missing).
pub fn prepare<'a>(
    client: &'a Client,
    files: Vec<OutFile>,
    ttl: Option<u64>,
    mut cmd: Vec<String>,
    bundle: Option<(&Path, &Hooks)>,
) -> Result<Prepared<'a>, UploadError> {
    let ticket = upload(client, &files, Scope::Run, ttl)?.ticket;
    drop(files);
    let (route, restore) = match bundle {
        Some((b, hooks)) => {
            let original = attach_bundle(b, &ticket, &hooks.binary, hooks.config.as_deref())?;
            (Route::Bundle, Some((b.to_owned(), original)))
        }
        None => {
            let annotations = passes_annotations(&cmd);
            (attach(&mut cmd, &ticket, annotations), None)
        }
    };
    Ok(Prepared {
        client,
        ticket,
        cmd,
        route,
        restore,
    })
}

/// Whether the started container's hook claimed the ticket, asked of the
/// daemon once the command is over (or, detached, has returned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    Yes,
    /// The container started and no hook ever claimed the ticket: the
    /// engine did not run privy's hook. The ticket has been dropped.
    No,
    /// Not asked: the command starts no container (`create`, or not an
    /// engine), or the daemon could not say.
    NotAsked,
}

impl Prepared<'_> {
    /// How the ticket reaches the container.
    pub fn route(&self) -> &Route {
        &self.route
    }

    /// The command as it will run (with the ticket's arguments).
    pub fn command(&self) -> &[String] {
        &self.cmd
    }

    /// Run the command, with the ticket in its environment too; put the
    /// bundle's `config.json` back; and drop the ticket if the container is
    /// gone with the command (otherwise it lives while the container exists:
    /// restarts re-inject the files). What could not be undone is told to
    /// `warn`, one line each; the command's status is returned.
    pub fn run(
        self,
        warn: &mut dyn FnMut(String),
    ) -> Result<(std::process::ExitStatus, Claimed), UploadError> {
        let status = run_child(&self.cmd, Some((ENV_TICKET, &self.ticket)));
        if let Some((b, original)) = &self.restore {
            if let Err(e) = restore_bundle(b, original) {
                warn(format!("privy: {e}"));
            }
        }
        let status = status?;
        let claimed = self.claimed(warn);
        let gone = claimed == Claimed::No
            || match self.route {
                Route::Args { ephemeral } => ephemeral,
                Route::Bundle => is_foreground_runtime_run(&self.cmd),
                Route::Env => false,
            };
        if gone {
            match self.client.delete(&self.ticket) {
                Ok(()) => {}
                Err(ClientError::Api {
                    status: 404 | 410, ..
                }) => {}
                Err(e) => warn(format!("privy: could not drop the ticket: {e}")),
            }
        }
        Ok((status, claimed))
    }

    /// Ask the daemon whether a hook claimed the ticket, for a command
    /// that started a container. A live ticket with no claimant was never
    /// claimed (claims are kept while their container exists), and so was
    /// one that expired; one ended because its container was removed was.
    fn claimed(&self, warn: &mut dyn FnMut(String)) -> Claimed {
        if !crate::engines::Command::parse(&self.cmd).starts_container() {
            return Claimed::NotAsked;
        }
        match self.client.info(&self.ticket) {
            Ok(info) if info.containers.is_empty() => Claimed::No,
            Ok(_) => Claimed::Yes,
            Err(ClientError::Api {
                status: 410,
                message,
            }) if message.contains("expired") => Claimed::No,
            Err(ClientError::Api {
                status: 410,
                message,
            }) if message.contains("removed") => Claimed::Yes,
            Err(ClientError::Api { .. }) => Claimed::NotAsked,
            Err(e) => {
                warn(format!(
                    "privy: could not ask whether the container claimed its ticket: {e}"
                ));
                Claimed::NotAsked
            }
        }
    }
}
