//! `privy scan`: an image, archive, tar or directory searched for private
//! bytes in every form the scanner knows.

use super::{common, Cli, Outcome, StdoutClosed};
use anyhow::{bail, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ScanArgs {
    /// oci:DIR, oci-archive:FILE, docker-archive:FILE, containers-storage:IMAGE, a tar (.tar, .tar.gz, .tar.zst) or a directory
    pub target: String,
    /// A secret to look for (repeatable); its path names it in findings
    #[arg(long = "secret-file", value_name = "FILE")]
    pub secret_files: Vec<PathBuf>,
    /// Also look for what the configured sources return for this request (--annotation, --stage); the default when no --secret-file is given
    #[arg(long)]
    pub sources: bool,
    /// A request annotation for --sources, key=value (repeatable)
    #[arg(long, value_name = "KEY=VALUE")]
    pub annotation: Vec<String>,
    /// The request stage for --sources
    #[arg(long, default_value = "run", value_parser = ["run", "build"])]
    pub stage: String,
    /// Shortest substring of a secret (bytes) that counts; shorter secrets match whole only
    #[arg(long, default_value_t = crate::scan::DEFAULT_MIN_MATCH)]
    pub min_match: usize,
    /// How many decoders deep to read files inside layers (a .tar.gz is two); deeper is INCOMPLETE
    #[arg(long, default_value_t = crate::scan::DEFAULT_MAX_NESTING)]
    pub max_nesting: u32,
    /// Bytes decoded inside a layer may be at most this many times its size (+64 MiB); past it, INCOMPLETE
    #[arg(long, default_value_t = crate::scan::DEFAULT_MAX_EXPANSION, value_name = "RATIO")]
    pub max_expansion: u64,
    /// Output format
    #[arg(long, default_value = "text", value_parser = ["text", "json", "sarif"])]
    pub format: String,
    /// Worker threads [default: one per core]
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Print wall time and peak memory to stderr
    #[arg(long)]
    pub stats: bool,
}

/// `privy scan`: 0 clean, 1 leak, 2 incomplete (and 2 for an error).
pub(super) fn execute(cli: &Cli, a: &ScanArgs) -> Result<Outcome> {
    super::logging::init(None, "warn");
    let code = scan(cli, a)?;
    Ok(if code == 0 {
        Outcome::Success
    } else {
        Outcome::Status(code)
    })
}

fn scan(cli: &Cli, a: &ScanArgs) -> Result<u8> {
    use crate::scan::{self, Needle, ScanOptions, Target};
    use std::io::IsTerminal;
    let started = std::time::Instant::now();
    // With no secret named, the user means "the files my sources give
    // out": scan as with --sources, and say so (one line on stderr, so the
    // report on stdout stays what --format says).
    let implied = a.secret_files.is_empty() && !a.sources;
    if implied {
        super::note(format_args!(
            "privy scan: no --secret-file given: scanning for what the configured sources give a {} request (as --sources)",
            a.stage
        ));
    }
    let mut needles = Vec::new();
    for f in &a.secret_files {
        needles.push(Needle::from_file(f)?);
    }
    if a.sources || implied {
        let cfg = common::load_config(cli)?;
        let stage = if a.stage == "build" {
            crate::pipeline::request::Stage::Build
        } else {
            crate::pipeline::request::Stage::Run
        };
        let got = scan::sources::needles_from_sources(
            &cfg,
            common::kv(&a.annotation, "--annotation")?,
            stage,
        )?;
        if got.is_empty() && needles.is_empty() {
            if implied {
                bail!("no secrets to scan for: no --secret-file given, and no configured source returned a file for this request (--stage, --annotation)");
            }
            bail!("--sources: no configured source returned a file for this request");
        }
        needles.extend(got);
    }
    let target = Target::parse(&a.target)?;
    let opts = ScanOptions {
        min_match: a.min_match,
        threads: a.threads,
        max_nesting: a.max_nesting,
        max_expansion: a.max_expansion,
        progress: a.format == "text" && std::io::stderr().is_terminal(),
    };
    let report = scan::scan(&target, &needles, &opts)?;
    let out = match a.format.as_str() {
        "json" => scan::output::json(&report) + "\n",
        "sarif" => scan::output::sarif(&report) + "\n",
        _ => scan::output::text(&report),
    };
    match super::write_stdout(format_args!("{out}")) {
        // The reader stopped early; the status still tells a leak (pipefail).
        Err(e) if e.is::<StdoutClosed>() => return Ok(exit_code(&report)),
        r => r?,
    }
    if a.stats {
        super::note(format_args!(
            "privy scan: {:.3} s wall, peak RSS {} MiB, {} bytes scanned",
            started.elapsed().as_secs_f64(),
            crate::sys::process::peak_rss_kib() / 1024,
            report.bytes
        ));
    }
    Ok(exit_code(&report))
}

/// The report's status: 0 clean, 1 leak, 2 incomplete.
fn exit_code(report: &crate::scan::Report) -> u8 {
    u8::try_from(report.exit_code()).unwrap_or(2)
}
