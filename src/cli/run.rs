//! `privy run`: the user's files uploaded, the ticket attached to the
//! container command, the command run; its status is privy's.

use super::{common, Cli, Outcome};
use crate::contract;
use crate::upload;
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub specs: common::UploadSpecs,
    /// An OCI bundle: the ticket (and privy's hooks, if missing) go into its
    /// config.json for the command's run, and config.json is restored after
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// The command: podman|docker run|create ..., buildah run ..., runc run ..., or anything (gets $PRIVY_TICKET)
    #[arg(last = true, required = true, value_name = "CMD")]
    pub cmd: Vec<String>,
}

/// `privy run`: upload, attach the ticket, run, pass the exit status on.
pub(super) fn execute(cli: &Cli, a: &RunArgs) -> Result<Outcome> {
    // Not dumpable while it holds the user's files (L1). RLIMIT_CORE stays:
    // the user's command inherits it.
    crate::sys::process::not_dumpable();
    super::logging::init(None, "warn");
    let cfg = common::load_config(cli)?;
    let files = common::collect_files(&cfg, &a.specs)?;
    if files.is_empty() {
        // Nothing private: run the command as it is.
        return Ok(Outcome::Child(upload::run_child(&a.cmd, None)?));
    }
    if a.bundle.is_none() {
        // Refuse before uploading anything when the engine would start the
        // container without privy's hook.
        crate::engines::hooked::check(&crate::engines::Command::parse(&a.cmd))?;
    }
    let client = common::client_for(&cfg, a.specs.socket.as_deref());
    let hooks = match &a.bundle {
        Some(_) => Some(upload::Hooks {
            binary: std::env::current_exe()?.canonicalize()?,
            config: cli.config.as_deref().map(common::absolute).transpose()?,
        }),
        None => None,
    };
    let bundle = a.bundle.as_deref().zip(hooks.as_ref());
    let prepared = upload::prepare(&client, files, a.specs.ttl, a.cmd.clone(), bundle)?;
    if *prepared.route() == upload::Route::Env {
        super::note(format_args!(
            "privy: {} takes no annotation that privy knows; the ticket is in ${env}: pass it to the container as the annotation {}=${env}",
            prepared.command()[0],
            contract::ANNOTATION_TICKET,
            env = contract::ENV_TICKET,
        ));
    }
    let engine = prepared.command()[0].clone();
    let (status, claimed) = prepared.run(&mut |line| super::note(format_args!("{line}")))?;
    if claimed == upload::Claimed::No {
        if status.success() {
            anyhow::bail!(
                "no hook claimed the ticket: {engine} started the container without privy's hook, so it had none of its private files; the upload is dropped"
            );
        }
        // The command failed: the container may never have started, so
        // only what is known is said, and its status stays the command's.
        super::note(format_args!(
            "privy: no hook claimed the ticket ({engine} failed); the upload is dropped"
        ));
    }
    Ok(Outcome::Child(status))
}
