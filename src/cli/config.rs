//! `privy config check`: the config validated, every plugin loaded (and
//! compiled into the cache), the effective config printed with its values
//! masked.

use super::{common, Cli, Outcome};
use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate the config and print the effective one (config values masked)
    Check,
}

pub(super) fn execute(cli: &Cli, command: &ConfigCommand) -> Result<Outcome> {
    match command {
        ConfigCommand::Check => {
            super::logging::init(None, "warn");
            let cfg = common::load_config(cli)?;
            crate::plugin::precompile(&cfg)?;
            out!("{}", cfg.effective_toml());
            Ok(Outcome::Success)
        }
    }
}
