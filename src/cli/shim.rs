//! `privy shim`: the OCI runtime wrapper (and `privy-shim`, the same
//! called by that name).

use super::{common, Cli, Outcome};
use crate::contract;
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ShimArgs {
    /// The real OCI runtime [default: shim.runtime from the config, else runc on PATH]
    #[arg(long, env = contract::ENV_RUNTIME_PATH)]
    pub runtime_path: Option<PathBuf>,
    /// The runtime's arguments, passed through unchanged
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

pub(super) fn execute(cli: &Cli, a: &ShimArgs) -> Result<Outcome> {
    super::logging::init(None, "warn");
    // The hooks run the thin hook next to privy when it is installed.
    let binary = crate::oci::install::hook_binary(&std::env::current_exe()?.canonicalize()?);
    let cfg_arg = cli.config.as_deref().map(common::absolute).transpose()?;
    // The config is read only when no runtime is named: a runtime call
    // that names one does not depend on the file parsing.
    let runtime = match &a.runtime_path {
        Some(r) => r.clone(),
        None => common::load_config(cli)?
            .shim
            .runtime
            .unwrap_or_else(|| PathBuf::from(crate::engines::runtime::DEFAULT_RUNTIME)),
    };
    crate::shim::exec(&runtime, &a.args, &binary, cfg_arg.as_deref())?;
    Ok(Outcome::Success)
}
