//! `privy run`: the user's files uploaded, the ticket attached to the
//! container command, the command run; its status is privy's.

use super::{common, Cli, Outcome};
use crate::contract;
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
    super::logging::init(None, "warn");
    use crate::run::{self, Route};
    let cfg = common::load_config(cli)?;
    let files = common::collect_files(&cfg, &a.specs)?;
    let mut cmd = a.cmd.clone();
    if files.is_empty() {
        // Nothing private: run the command as it is.
        return Ok(Outcome::Child(run::run_child(&cmd, None)?));
    }
    let client = common::client_for(&cfg, a.specs.socket.as_deref());
    let created = run::upload(&client, &files, crate::daemon::Scope::Run, a.specs.ttl)?;
    drop(files);
    let ticket = created.ticket;
    let (route, restore) = match &a.bundle {
        Some(b) => {
            let binary = std::env::current_exe()?.canonicalize()?;
            let cfg_arg = cli.config.as_deref().map(common::absolute).transpose()?;
            let original = run::attach_bundle(b, &ticket, &binary, cfg_arg.as_deref())?;
            (Route::Bundle, Some((b.clone(), original)))
        }
        None => {
            let annotations = run::passes_annotations(&cmd);
            (run::attach(&mut cmd, &ticket, annotations), None)
        }
    };
    if route == Route::Env {
        super::note(format_args!(
            "privy: {} takes no annotation that privy knows; the ticket is in ${env}: pass it to the container as the annotation {}=${env}",
            cmd[0],
            contract::ANNOTATION_TICKET,
            env = contract::ENV_TICKET,
        ));
    }
    let status = run::run_child(&cmd, Some((contract::ENV_TICKET, &ticket)));
    if let Some((b, original)) = restore {
        if let Err(e) = run::restore_bundle(&b, &original) {
            super::note(format_args!("privy: {e}"));
        }
    }
    let status = status?;
    // The container is gone with the command: so is its ticket. Otherwise
    // it lives while the container exists (restarts re-inject the files).
    let gone = match route {
        Route::Args { ephemeral } => ephemeral,
        Route::Bundle => run::is_foreground_runtime_run(&cmd),
        Route::Env => false,
    };
    if gone {
        match client.delete(&ticket) {
            Ok(()) => {}
            Err(crate::daemon::client::ClientError::Api {
                status: 404 | 410, ..
            }) => {}
            Err(e) => super::note(format_args!("privy: could not drop the ticket: {e}")),
        }
    }
    Ok(Outcome::Child(status))
}
