//! `privy hook create-runtime|poststop`: what an OCI runtime runs, with
//! the container's state on stdin.

use super::{common, Cli, Outcome};
use anyhow::{Context, Result};
use clap::Subcommand;
use std::io::Read;

#[derive(Subcommand, Debug, Clone, Copy)]
pub enum HookStage {
    /// createRuntime: fetch, check and inject the private files
    CreateRuntime,
    /// poststop: remove mountpoint directories privy created
    Poststop,
}

/// Run one hook; an error stops the container (the runtime sees exit 1).
pub(super) fn execute(cli: &Cli, stage: HookStage) -> Result<Outcome> {
    crate::sys::process::harden();
    let cfg = common::load_config(cli)?;
    let logs_to_file = super::logging::init(Some(&cfg), "info");
    let mut stdin = Vec::new();
    std::io::stdin()
        .read_to_end(&mut stdin)
        .context("reading OCI state from stdin")?;
    match stage {
        HookStage::CreateRuntime => {
            crate::hook::create_runtime(&cfg, &stdin, &mut crate::pipeline::gather::InProcess)
                .map_err(|e| {
                    // The log file keeps a record; on stderr (a rootless
                    // hook, which cannot open it) main's `privy:` line
                    // is the one report, not a second copy of it.
                    if logs_to_file {
                        tracing::error!("createRuntime failed: {e}");
                    }
                    e
                })?;
        }
        HookStage::Poststop => crate::hook::poststop(&cfg, &stdin)?,
    }
    Ok(Outcome::Success)
}
