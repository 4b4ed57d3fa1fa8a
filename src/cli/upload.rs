//! `privy upload`: the user's files to the daemon; the ticket printed.

use super::{common, Cli, Outcome};
use anyhow::{bail, Result};

#[derive(clap::Args, Debug)]
pub struct UploadArgs {
    #[command(flatten)]
    pub specs: common::UploadSpecs,
    /// The ticket is for every RUN step of one build (it outlives each step's container)
    #[arg(long)]
    pub build: bool,
    /// Print the daemon's answer as JSON (ticket, names, sizes)
    #[arg(long)]
    pub json: bool,
}

pub(super) fn execute(cli: &Cli, a: &UploadArgs) -> Result<Outcome> {
    // Not dumpable while it holds the user's files (L1).
    crate::sys::process::not_dumpable();
    super::logging::init(None, "warn");
    let cfg = common::load_config(cli)?;
    let client = common::client_for(&cfg, a.specs.socket.as_deref());
    let files = common::collect_files(&cfg, &a.specs)?;
    if files.is_empty() {
        bail!("nothing to upload: give --private SRC:DEST (or references in ~/.config/privy/privy.toml)");
    }
    let scope = if a.build {
        crate::daemon::Scope::Build
    } else {
        crate::daemon::Scope::Run
    };
    let created = crate::upload::upload(&client, &files, scope, a.specs.ttl)?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&created)?);
    } else {
        outln!("{}", created.ticket);
    }
    Ok(Outcome::Success)
}
