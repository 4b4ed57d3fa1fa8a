//! `privy daemon`: the socket from systemd, `--socket`, or the config.

use super::{common, Cli, Outcome};
use anyhow::Result;
use std::path::PathBuf;

pub(super) fn execute(cli: &Cli, socket: &Option<PathBuf>) -> Result<Outcome> {
    let cfg = common::load_config(cli)?;
    super::logging::init(None, "info");
    let listen = match crate::daemon::Listen::from_systemd() {
        Some(l) if socket.is_none() => l,
        _ => {
            crate::daemon::Listen::Path(socket.clone().unwrap_or_else(|| cfg.daemon.socket_path()))
        }
    };
    let config = match &cli.config {
        Some(p) => (common::absolute(p)?, true),
        None => (PathBuf::from(crate::contract::DEFAULT_CONFIG_PATH), false),
    };
    crate::daemon::serve(&cfg, config, listen)?;
    Ok(Outcome::Success)
}
