//! `privy`: flags in, one-line errors out. Exit status 1 on failure (2 for
//! `privy scan`, whose 1 means a leak).

use clap::Parser;

fn main() {
    // Linked as `privy-shim` (containerd's `--runc-binary` takes no
    // arguments), the binary is the runtime wrapper.
    let args = privy::engines::ctr::shim_argv(std::env::args_os());
    let cli = privy::cli::Cli::parse_from(args);
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
        // The reader of our output went away (`... | head -1`): it had what
        // it wanted; that is no error, and says nothing more (B15).
        if e.is::<privy::cli::StdoutClosed>() {
            std::process::exit(0);
        }
        let line = format!("privy: {}", format!("{e:#}").replace('\n', " "));
        if is_hook {
            privy::hook::report_error(&line);
        } else {
            // Never `eprintln!`: it panics when stderr is a closed pipe.
            use std::io::Write;
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        }
        std::process::exit(code);
    }
}
