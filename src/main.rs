//! `privy`: flags in, one-line errors out, and every exit code from one
//! table:
//!
//! | command        | 0                  | 1                        | 2                                 | other |
//! |----------------|--------------------|--------------------------|-----------------------------------|-------|
//! | any            | success            | error: one `privy: ...` line on stderr | usage error (clap)  |       |
//! | `scan`         | clean              | a leak was found         | error, or part of the target unread |     |
//! | `build`        | built and clean    | a leak was found         | privy could not check the image   | the engine's status when it fails |
//! | `run`          | the command's status; 128+N, or the same signal re-raised, when it was killed |||  |
//! | `hook`         | the container may start | it must not         |                                   |       |
//!
//! `--help` and `--version` exit 0. A reader that closed standard output
//! early (`privy ... | head -1`) is no error: exit 0 and say nothing (B15).

use privy::cli::{self, Outcome, StdoutClosed};
use std::process::ExitCode;

fn main() -> ExitCode {
    // Linked as `privy-shim` (containerd's `--runc-binary` takes no
    // arguments), the binary is the runtime wrapper.
    let args = privy::engines::ctr::shim_argv(std::env::args_os());
    let cli = match <cli::Cli as clap::Parser>::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            // Help and version on stdout, usage errors on stderr.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let failure = cli::failure_status(&cli.command);
    let is_hook = cli.command.is_hook();
    match cli::dispatch(cli) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Status(code)) => ExitCode::from(code),
        Ok(Outcome::Child(status)) => like(status),
        Err(e) if e.is::<StdoutClosed>() => ExitCode::SUCCESS,
        Err(e) => {
            let line = format!("privy: {}", format!("{e:#}").replace('\n', " "));
            if is_hook {
                privy::hook::report_error(&line);
            } else {
                // Never `eprintln!`: it panics when stderr is a closed pipe.
                use std::io::Write;
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
            ExitCode::from(failure)
        }
    }
}

/// Leave as a child did: its exit code, or killed by the same signal (so a
/// shell sees the same status), or 128+N when that signal does not end us.
fn like(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    if let Some(sig) = status.signal() {
        privy::sys::process::die_like(sig);
        return ExitCode::from(u8::try_from(128 + sig).unwrap_or(u8::MAX));
    }
    ExitCode::from(
        status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(1),
    )
}
