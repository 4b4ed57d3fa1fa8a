//! What several commands share: the config, `KEY=VALUE` lists, paths made
//! absolute for the hooks, the daemon client, the user's files.

use crate::config::Config;
use crate::contract;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct UploadSpecs {
    /// A private file: SRC:DEST (SRC `-` reads stdin; DEST is relative to the target) (repeatable)
    #[arg(
        long = "private",
        short = 'p',
        value_name = "SRC:DEST",
        allow_hyphen_values = true
    )]
    pub private: Vec<String>,
    /// Skip the references in ~/.config/privy/privy.toml
    #[arg(long)]
    pub no_references: bool,
    /// Seconds the upload waits for a container to claim it [default: daemon.ticket_ttl_secs]
    #[arg(long, value_name = "SECS")]
    pub ttl: Option<u64>,
    /// The daemon's socket [default: daemon.socket from the config]
    #[arg(long, env = contract::ENV_SOCKET)]
    pub socket: Option<PathBuf>,
}

pub(super) fn load_config(cli: &super::Cli) -> Result<Config> {
    let (path, explicit) = config_path(cli);
    Ok(Config::load(&path, explicit)?)
}

/// The config file the command reads, and whether it was named.
pub(super) fn config_path(cli: &super::Cli) -> (PathBuf, bool) {
    match &cli.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(contract::DEFAULT_CONFIG_PATH), false),
    }
}

/// The daemon client for `cfg`, or for `socket` when the command names one.
pub(super) fn client_for(cfg: &Config, socket: Option<&Path>) -> crate::daemon::client::Client {
    crate::daemon::client::Client::for_config(cfg, socket)
}

/// `--private` flags over the user's references, read as the calling user.
pub(super) fn collect_files(
    cfg: &Config,
    specs: &UploadSpecs,
) -> Result<Vec<crate::daemon::client::OutFile>> {
    Ok(crate::upload::collect(
        cfg,
        &specs.private,
        specs.no_references,
    )?)
}

pub(super) fn kv(
    list: &[String],
    what: &str,
) -> Result<std::collections::BTreeMap<String, String>> {
    list.iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("{what} {s:?}: expected KEY=VALUE"),
        })
        .collect()
}

/// A `.wasm` named on the command line: a regular file, opened without
/// blocking (a FIFO is refused at once, not waited on).
pub(super) fn read_wasm(file: &Path) -> Result<Vec<u8>> {
    crate::sys::fs::read_regular(file, crate::plugin::MAX_WASM_BYTES)
        .with_context(|| format!("{}", file.display()))
}

pub(super) fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_owned());
    }
    Ok(std::env::current_dir()?.join(p))
}
