//! `privy shim`: the OCI runtime wrapper (and `privy-shim`, the same
//! called by that name).

use super::{common, Cli, Outcome};
use crate::contract;
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ShimArgs {
    /// The real OCI runtime
    #[arg(long, default_value = crate::engines::runtime::DEFAULT_RUNTIME, env = contract::ENV_RUNTIME_PATH)]
    pub runtime_path: PathBuf,
    /// The runtime's arguments, passed through unchanged
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

pub(super) fn execute(cli: &Cli, a: &ShimArgs) -> Result<Outcome> {
    super::logging::init(None, "warn");
    // The hooks run the thin hook next to privy when it is installed.
    let binary = crate::oci::install::hook_binary(&std::env::current_exe()?.canonicalize()?);
    let cfg_arg = cli.config.as_deref().map(common::absolute).transpose()?;
    crate::shim::exec(&a.runtime_path, &a.args, &binary, cfg_arg.as_deref())?;
    Ok(Outcome::Success)
}
