//! `privy`: flags in, one-line errors out. Exit status 1 on failure.

use clap::Parser;

fn main() {
    let cli = privy::cli::Cli::parse();
    let is_hook = matches!(cli.command, privy::cli::Command::Hook { .. });
    if let Err(e) = privy::cli::run(cli) {
        let line = format!("privy: {}", format!("{e:#}").replace('\n', " "));
        if is_hook {
            privy::hook::report_error(&line);
        } else {
            eprintln!("{line}");
        }
        std::process::exit(1);
    }
}
