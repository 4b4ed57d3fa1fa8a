//! `privy`: flags in, one-line errors out. Exit status 1 on failure (2 for
//! `privy scan`, whose 1 means a leak).

use clap::Parser;

fn main() {
    let cli = privy::cli::Cli::parse();
    let is_hook = matches!(cli.command, privy::cli::Command::Hook { .. });
    // `privy scan` documents 2 for errors (1 means a leak was found).
    let code = if matches!(cli.command, privy::cli::Command::Scan(_)) {
        2
    } else {
        1
    };
    if let Err(e) = privy::cli::run(cli) {
        // A command that chose its exit status has printed what it had to say.
        if let Some(privy::build::Exit(code)) = e.downcast_ref() {
            std::process::exit(*code);
        }
        let line = format!("privy: {}", format!("{e:#}").replace('\n', " "));
        if is_hook {
            privy::hook::report_error(&line);
        } else {
            eprintln!("{line}");
        }
        std::process::exit(code);
    }
}
