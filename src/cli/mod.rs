//! Command-line interface: flags and dispatch, one file per command.
//! Everything a command does lives in the library; a command's file parses
//! its flags, calls the library, prints, and returns an [`Outcome`]. The
//! exit code for each outcome is `main`'s alone.

use crate::contract;
use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Standard output was closed by its reader (`privy scan ... | head -1`).
/// Not a failure of privy's: `main` exits quietly (B15); a command that
/// earned a status keeps it (`scan`).
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub struct StdoutClosed;

/// Write to standard output, flushed; a reader that went away is
/// [`StdoutClosed`] instead of `println!`'s panic.
pub(crate) fn write_stdout(args: std::fmt::Arguments<'_>) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_fmt(args).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("writing to standard output")),
    }
}

/// A line to standard error that never panics: a closed stderr loses the
/// line, nothing else.
pub(crate) fn note(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}

/// `print!` that returns [`StdoutClosed`] from the calling function.
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::write_stdout(format_args!($($arg)*))? };
}

/// `println!` that returns [`StdoutClosed`] from the calling function.
macro_rules! outln {
    ($($arg:tt)*) => { $crate::cli::write_stdout(format_args!("{}\n", format_args!($($arg)*)))? };
}

mod build;
mod common;
mod config;
mod daemon;
mod hook;
mod install;
mod logging;
mod plugin;
mod refresh;
mod run;
mod scan;
mod shim;
mod ticket;
mod upload;

pub use build::BuildArgs;
pub use common::UploadSpecs;
pub use config::ConfigCommand;
pub use hook::HookStage;
pub use install::InstallArgs;
pub use plugin::{PluginCommand, PluginRunArgs};
pub use refresh::RefreshArgs;
pub use run::RunArgs;
pub use scan::ScanArgs;
pub use shim::ShimArgs;
pub use ticket::TicketCommand;
pub use upload::UploadArgs;

#[derive(Parser, Debug)]
#[command(
    name = "privy",
    version,
    about = "Private files for Linux containers, from sandboxed WebAssembly sources"
)]
pub struct Cli {
    /// Config file [default: /etc/privy/privy.toml; built-in default when absent]
    #[arg(long, global = true, env = contract::ENV_CONFIG)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// OCI hook entry points (runtimes call these; state JSON on stdin)
    Hook {
        #[command(subcommand)]
        stage: HookStage,
    },
    /// Add privy's hooks to a bundle or a hooks.d directory
    Install(InstallArgs),
    /// Inspect the configuration
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Write, check, run and list source plugins
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Scan an image, archive, tar or directory for private file contents (exit 0 clean, 1 leak, 2 error)
    Scan(ScanArgs),
    /// Run `podman build` or `buildah bud` with the private files in every
    /// RUN step, then scan the image: exit 1 on a leak, the engine's status otherwise
    Build(BuildArgs),
    /// Hold per-run uploads in memory and hand them to the hook (as root)
    Daemon {
        /// Unix socket [default: daemon.socket from the config, /run/privy/privy.sock]
        #[arg(long, env = contract::ENV_SOCKET)]
        socket: Option<PathBuf>,
    },
    /// Upload private files for one container, then run CMD with the ticket attached
    Run(RunArgs),
    /// Upload private files and print the ticket (for scripts)
    Upload(UploadArgs),
    /// Look at or drop one of your tickets
    Ticket {
        #[command(subcommand)]
        command: TicketCommand,
    },
    /// OCI runtime wrapper: add privy's hooks to the bundle, then exec the real runtime
    Shim(ShimArgs),
    /// Give running containers the current version of their files now (root)
    Refresh(RefreshArgs),
    /// Internal: the child `privy refresh` runs to write in one container
    #[command(name = "refresh-apply", hide = true)]
    RefreshApply,
}

/// How a command ended, for `main` to turn into the exit code.
#[derive(Debug)]
pub enum Outcome {
    Success,
    /// A status the command earned: `scan` 1 (a leak) or 2 (incomplete);
    /// `build` 1 (a leak) or the engine's own.
    Status(u8),
    /// `privy run`: leave as the command did (its code, or its signal).
    Child(std::process::ExitStatus),
}

impl Command {
    /// Whether this is a runtime's hook call (its error line goes where the
    /// runtime shows it).
    pub fn is_hook(&self) -> bool {
        matches!(self, Command::Hook { .. })
    }
}

/// The status a failure of `cmd` exits with: 2 for `scan` and `build`
/// (privy could not check; their 1 means a leak was found), 1 otherwise.
pub fn failure_status(cmd: &Command) -> u8 {
    match cmd {
        Command::Scan(_) | Command::Build(_) => 2,
        _ => 1,
    }
}

/// Run the command; `main` prints an error and maps the outcome to an
/// exit code.
pub fn dispatch(cli: Cli) -> Result<Outcome> {
    match &cli.command {
        Command::Hook { stage } => hook::execute(&cli, *stage),
        Command::Install(a) => install::execute(&cli, a),
        Command::Config { command } => config::execute(&cli, command),
        Command::Plugin { command } => plugin::execute(&cli, command),
        Command::Scan(a) => scan::execute(&cli, a),
        Command::Build(a) => build::execute(&cli, a),
        Command::Daemon { socket } => daemon::execute(&cli, socket),
        Command::Run(a) => run::execute(&cli, a),
        Command::Upload(a) => upload::execute(&cli, a),
        Command::Ticket { command } => ticket::execute(&cli, command),
        Command::Shim(a) => shim::execute(&cli, a),
        Command::Refresh(a) => refresh::execute(&cli, a),
        Command::RefreshApply => refresh::child(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_hook_subcommands_are_the_names_installed_hooks_call() {
        let cli = Cli::command();
        let hook = cli.find_subcommand("hook").expect("hook");
        let names: Vec<&str> = hook.get_subcommands().map(|c| c.get_name()).collect();
        assert_eq!(
            names,
            [contract::HOOK_CREATE_RUNTIME, contract::HOOK_POSTSTOP]
        );
    }
}
