//! `privy ticket info|rm`: one of the caller's tickets, by name.

use super::{common, Cli, Outcome};
use crate::contract;
use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum TicketCommand {
    /// Names, sizes, expiry and containers of a ticket (never contents)
    Info {
        ticket: String,
        #[arg(long, env = contract::ENV_SOCKET)]
        socket: Option<PathBuf>,
    },
    /// Drop a ticket now; its files are zeroized
    Rm {
        ticket: String,
        #[arg(long, env = contract::ENV_SOCKET)]
        socket: Option<PathBuf>,
    },
}

pub(super) fn execute(cli: &Cli, command: &TicketCommand) -> Result<Outcome> {
    super::logging::init(None, "warn");
    let cfg = common::load_config(cli)?;
    match command {
        TicketCommand::Info { ticket, socket } => {
            let info = common::client_for(&cfg, socket.as_deref()).info(ticket)?;
            outln!("{}", serde_json::to_string_pretty(&info)?);
        }
        TicketCommand::Rm { ticket, socket } => {
            common::client_for(&cfg, socket.as_deref()).delete(ticket)?;
        }
    }
    Ok(Outcome::Success)
}
