//! `privy`: flags in, one-line errors out. Exit status 1 on failure.

use clap::Parser;

fn main() {
    let cli = privy::cli::Cli::parse();
    if let Err(e) = privy::cli::run(cli) {
        let msg = format!("{e:#}").replace('\n', " ");
        eprintln!("privy: {msg}");
        std::process::exit(1);
    }
}
