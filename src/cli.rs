//! Command-line interface: flags and dispatch. Everything it calls lives in
//! the library; this module only parses, sets up logging and prints.

use crate::config::{self, Config};
use crate::oci::install;
use crate::plugin::PluginHost;
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Standard output was closed by its reader (`privy scan ... | head -1`).
/// Not a failure of privy's: `main` exits quietly, with the status the
/// command had earned (B15).
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub struct StdoutClosed;

/// Write to standard output, flushed; a reader that went away is
/// [`StdoutClosed`] instead of `println!`'s panic.
fn write_stdout(args: std::fmt::Arguments<'_>) -> Result<()> {
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
fn note(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}

/// `print!` that returns [`StdoutClosed`] from the calling function.
macro_rules! out {
    ($($arg:tt)*) => { write_stdout(format_args!($($arg)*))? };
}

/// `println!` that returns [`StdoutClosed`] from the calling function.
macro_rules! outln {
    ($($arg:tt)*) => { write_stdout(format_args!("{}\n", format_args!($($arg)*)))? };
}

#[derive(Parser, Debug)]
#[command(
    name = "privy",
    version,
    about = "Private files for Linux containers, from sandboxed WebAssembly sources"
)]
pub struct Cli {
    /// Config file [default: /etc/privy/privy.toml; built-in default when absent]
    #[arg(long, global = true, env = "PRIVY_CONFIG")]
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
        #[arg(long, env = "PRIVY_SOCKET")]
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
}

#[derive(clap::Args, Debug)]
pub struct ScanArgs {
    /// oci:DIR, oci-archive:FILE, docker-archive:FILE, containers-storage:IMAGE, a tar (.tar, .tar.gz, .tar.zst) or a directory
    pub target: String,
    /// A secret to look for (repeatable); its path names it in findings
    #[arg(long = "secret-file", value_name = "FILE")]
    pub secret_files: Vec<PathBuf>,
    /// Also look for what the configured sources return for this request (--annotation, --stage)
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

#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// Files for this build's RUN steps, uploaded to the daemon as one build ticket
    #[command(flatten)]
    pub specs: UploadSpecs,
    /// Remove the image when the scan finds a leak
    #[arg(long)]
    pub rm_on_leak: bool,
    /// The engine command: `podman build ARGS...` or `buildah bud ARGS...`
    #[arg(last = true, required = true, value_name = "ENGINE")]
    pub engine: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct UploadSpecs {
    /// A private file: SRC:DEST (SRC `-` reads stdin; DEST is relative to the target) (repeatable)
    #[arg(
        long = "private",
        short = 'p',
        value_name = "SRC:DEST",
        allow_hyphen_values = true
    )]
    pub private: Vec<String>,
    /// Skip the references in ~/.config/privy/privy.toml
    #[arg(long)]
    pub no_references: bool,
    /// Seconds the upload waits for a container to claim it [default: daemon.ticket_ttl_secs]
    #[arg(long, value_name = "SECS")]
    pub ttl: Option<u64>,
    /// The daemon's socket [default: daemon.socket from the config]
    #[arg(long, env = "PRIVY_SOCKET")]
    pub socket: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub specs: UploadSpecs,
    /// An OCI bundle: the ticket (and privy's hooks, if missing) go into its
    /// config.json for the command's run, and config.json is restored after
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// The command: podman|docker run|create ..., buildah run ..., runc run ..., or anything (gets $PRIVY_TICKET)
    #[arg(last = true, required = true, value_name = "CMD")]
    pub cmd: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct UploadArgs {
    #[command(flatten)]
    pub specs: UploadSpecs,
    /// The ticket is for every RUN step of one build (it outlives each step's container)
    #[arg(long)]
    pub build: bool,
    /// Print the daemon's answer as JSON (ticket, names, sizes)
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum TicketCommand {
    /// Names, sizes, expiry and containers of a ticket (never contents)
    Info {
        ticket: String,
        #[arg(long, env = "PRIVY_SOCKET")]
        socket: Option<PathBuf>,
    },
    /// Drop a ticket now; its files are zeroized
    Rm {
        ticket: String,
        #[arg(long, env = "PRIVY_SOCKET")]
        socket: Option<PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
pub struct ShimArgs {
    /// The real OCI runtime
    #[arg(long, default_value = "runc", env = "PRIVY_RUNTIME_PATH")]
    pub runtime_path: PathBuf,
    /// The runtime's arguments, passed through unchanged
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Write a ready-to-build plugin crate into ./NAME (or --dir)
    New {
        /// Crate name: a-z, 0-9 and `-`
        name: String,
        /// Where to write it [default: ./NAME]
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Check that a .wasm is a privy source component of this contract version, and list its imports
    Check { file: PathBuf },
    /// Run a .wasm as the hook would, with the same limits; prints names, sizes and fingerprints, never values
    Run(PluginRunArgs),
    /// Show every configured source with its grant, limits and digest
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args, Debug)]
pub struct PluginRunArgs {
    /// The component
    pub file: PathBuf,
    /// Grant a directory, read-only (repeatable)
    #[arg(long = "grant-dir")]
    pub grant_dirs: Vec<PathBuf>,
    /// Grant a single file (repeatable)
    #[arg(long = "grant-file")]
    pub grant_files: Vec<PathBuf>,
    /// Grant a host:port (repeatable)
    #[arg(long = "grant-host")]
    pub grant_hosts: Vec<String>,
    /// A config value, key=value (repeatable)
    #[arg(long = "config-value", short = 'c', value_name = "KEY=VALUE")]
    pub config_values: Vec<String>,
    /// A container annotation, key=value (repeatable)
    #[arg(long)]
    pub annotation: Vec<String>,
    /// The stage the request carries
    #[arg(long, default_value = "run", value_parser = ["run", "build"])]
    pub stage: String,
    /// The container id the request carries
    #[arg(long, default_value = "privy-plugin-run")]
    pub container_id: String,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug, Clone, Copy)]
pub enum HookStage {
    /// createRuntime: fetch, check and inject the private files
    CreateRuntime,
    /// poststop: remove mountpoint directories privy created
    Poststop,
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("where").required(true).multiple(true).args(["bundle", "hooks_dir", "systemd"])))]
pub struct InstallArgs {
    /// OCI bundle whose config.json gets createRuntime and poststop hooks (runc, crun)
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// hooks.d directory for podman, buildah and CRI-O (e.g. /usr/share/containers/oci/hooks.d)
    #[arg(long)]
    pub hooks_dir: Option<PathBuf>,
    /// systemd units for the daemon (privy.socket, privy.service), in --unit-dir
    #[arg(long)]
    pub systemd: bool,
    /// Where --systemd writes the units
    #[arg(long, default_value = "/etc/systemd/system")]
    pub unit_dir: PathBuf,
    /// Path the hooks will run [default: this binary]
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Remove what install added
    #[arg(long)]
    pub uninstall: bool,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate the config and print the effective one (config values masked)
    Check,
}

fn load_config(cli: &Cli) -> Result<Config> {
    let (path, explicit) = match &cli.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(config::DEFAULT_PATH), false),
    };
    Ok(Config::load(&path, explicit)?)
}

/// Send logs to the config's log file as JSON lines (hooks), or stderr.
/// Returns whether they go to the file.
fn init_logging(cfg: Option<&Config>, default_level: &str) -> bool {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PRIVY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let file = cfg
        .filter(|c| !c.log_file.as_os_str().is_empty())
        .and_then(|c| {
            if let Some(d) = c.log_file.parent() {
                let _ = std::fs::create_dir_all(d);
            }
            // Names and fingerprints only, but still root's business.
            std::os::unix::fs::OpenOptionsExt::mode(
                std::fs::OpenOptions::new().create(true).append(true),
                0o600,
            )
            .open(&c.log_file)
            .ok()
        });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let to_file = file.is_some();
    let _ = match file {
        Some(f) => builder
            .json()
            .with_writer(std::sync::Mutex::new(f))
            .try_init(),
        None => builder.with_writer(std::io::stderr).try_init(),
    };
    to_file
}

/// Run the CLI; the caller prints errors.
pub fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Hook { stage } => {
            crate::hook::harden_process();
            let cfg = load_config(&cli)?;
            let logs_to_file = init_logging(Some(&cfg), "info");
            let mut stdin = Vec::new();
            std::io::stdin()
                .read_to_end(&mut stdin)
                .context("reading OCI state from stdin")?;
            match stage {
                HookStage::CreateRuntime => {
                    crate::hook::create_runtime(&cfg, &stdin).map_err(|e| {
                        // The log file keeps a record; on stderr (a rootless
                        // hook, which cannot open it) main's `privy:` line
                        // is the one report, not a second copy of it.
                        if logs_to_file {
                            tracing::error!("createRuntime failed: {e}");
                        }
                        e
                    })?;
                }
                HookStage::Poststop => crate::hook::poststop(&cfg, &stdin)?,
            }
            Ok(())
        }
        Command::Install(args) => {
            init_logging(None, "warn");
            let cfg = load_config(&cli)?;
            let binary = match &args.binary {
                Some(b) => b.clone(),
                None => std::env::current_exe()?.canonicalize()?,
            };
            // A non-default config must be passed to the hook explicitly.
            let cfg_arg = cli.config.as_deref().map(absolute).transpose()?;
            if !args.uninstall {
                load_all(&cfg)?;
            }
            if let Some(b) = &args.bundle {
                install::bundle(b, &binary, cfg_arg.as_deref(), args.uninstall)?;
                outln!(
                    "{} privy hooks {} {}",
                    verb(args.uninstall),
                    prep(args.uninstall),
                    b.join("config.json").display()
                );
            }
            if args.systemd {
                let socket = cfg.daemon.socket_path();
                for f in install::systemd(
                    &args.unit_dir,
                    &binary,
                    cfg_arg.as_deref(),
                    &socket,
                    args.uninstall,
                )? {
                    outln!(
                        "{} {}",
                        if args.uninstall { "removed" } else { "wrote" },
                        f.display()
                    );
                }
                if !args.uninstall {
                    outln!("enable it with: systemctl daemon-reload && systemctl enable --now privy.socket");
                }
            }
            if let Some(d) = &args.hooks_dir {
                for f in install::hooks_dir(d, &binary, cfg_arg.as_deref(), args.uninstall)? {
                    outln!(
                        "{} {}",
                        if args.uninstall { "removed" } else { "wrote" },
                        f.display()
                    );
                }
            }
            Ok(())
        }
        Command::Plugin { command } => {
            init_logging(None, "warn");
            plugin_command(&cli, command)
        }
        Command::Scan(args) => {
            init_logging(None, "warn");
            let code = scan_command(&cli, args)?;
            if code != 0 {
                use std::io::Write;
                let _ = std::io::stdout().flush();
                std::process::exit(code);
            }
            Ok(())
        }
        Command::Build(args) => {
            init_logging(None, "warn");
            build_command(&cli, args)
        }
        Command::Daemon { socket } => {
            let cfg = load_config(&cli)?;
            init_logging(None, "info");
            let listen = match crate::daemon::Listen::from_systemd() {
                Some(l) if socket.is_none() => l,
                _ => crate::daemon::Listen::Path(
                    socket.clone().unwrap_or_else(|| cfg.daemon.socket_path()),
                ),
            };
            crate::daemon::run(&cfg, listen)?;
            Ok(())
        }
        Command::Run(a) => {
            init_logging(None, "warn");
            run_command(&cli, a)
        }
        Command::Upload(a) => {
            init_logging(None, "warn");
            let cfg = load_config(&cli)?;
            let client = client_for(&cfg, a.specs.socket.as_deref());
            let files = collect_files(&cfg, &a.specs)?;
            if files.is_empty() {
                bail!("nothing to upload: give --private SRC:DEST (or references in ~/.config/privy/privy.toml)");
            }
            let scope = if a.build {
                crate::daemon::Scope::Build
            } else {
                crate::daemon::Scope::Run
            };
            let created = crate::run::upload(&client, &files, scope, a.specs.ttl)?;
            if a.json {
                outln!("{}", serde_json::to_string_pretty(&created)?);
            } else {
                outln!("{}", created.ticket);
            }
            Ok(())
        }
        Command::Ticket { command } => {
            init_logging(None, "warn");
            let cfg = load_config(&cli)?;
            match command {
                TicketCommand::Info { ticket, socket } => {
                    let info = client_for(&cfg, socket.as_deref()).info(ticket)?;
                    outln!("{}", serde_json::to_string_pretty(&info)?);
                }
                TicketCommand::Rm { ticket, socket } => {
                    client_for(&cfg, socket.as_deref()).delete(ticket)?;
                }
            }
            Ok(())
        }
        Command::Shim(a) => {
            init_logging(None, "warn");
            let binary = std::env::current_exe()?.canonicalize()?;
            let cfg_arg = cli.config.as_deref().map(absolute).transpose()?;
            crate::shim::exec(&a.runtime_path, &a.args, &binary, cfg_arg.as_deref())?;
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            init_logging(None, "warn");
            let cfg = load_config(&cli)?;
            load_all(&cfg)?;
            out!("{}", cfg.effective_toml());
            Ok(())
        }
    }
}

/// `privy scan`: returns the exit code (0 clean, 1 leak, 2 incomplete);
/// errors (exit 2) are returned.
fn scan_command(cli: &Cli, a: &ScanArgs) -> Result<i32> {
    use crate::scan::{self, Needle, ScanOptions, Target};
    use std::io::IsTerminal;
    let started = std::time::Instant::now();
    if a.secret_files.is_empty() && !a.sources {
        bail!("no secrets to scan for: give --secret-file FILE or --sources");
    }
    let mut needles = Vec::new();
    for f in &a.secret_files {
        needles.push(Needle::from_file(f)?);
    }
    if a.sources {
        let cfg = load_config(cli)?;
        let stage = if a.stage == "build" {
            crate::request::Stage::Build
        } else {
            crate::request::Stage::Run
        };
        let got =
            scan::sources::needles_from_sources(&cfg, kv(&a.annotation, "--annotation")?, stage)?;
        if got.is_empty() && needles.is_empty() {
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
    match write_stdout(format_args!("{out}")) {
        // The reader stopped early; the status still tells a leak (pipefail).
        Err(e) if e.is::<StdoutClosed>() => return Ok(report.exit_code()),
        r => r?,
    }
    if a.stats {
        note(format_args!(
            "privy scan: {:.3} s wall, peak RSS {} MiB, {} bytes scanned",
            started.elapsed().as_secs_f64(),
            peak_rss_kib() / 1024,
            report.bytes
        ));
    }
    Ok(report.exit_code())
}

/// Peak resident set size of this process, in KiB.
fn peak_rss_kib() -> u64 {
    // SAFETY: getrusage fills the struct it is given.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru.ru_maxrss as u64
    }
}

fn client_for(cfg: &Config, socket: Option<&Path>) -> crate::daemon::client::Client {
    let socket = socket
        .map(Path::to_path_buf)
        .unwrap_or_else(|| cfg.daemon.socket_path());
    let wait = std::time::Duration::from_secs(cfg.daemon.client_timeout_secs);
    crate::daemon::client::Client::new(socket, wait)
}

/// `--private` flags over the user's references, read as the calling user.
fn collect_files(cfg: &Config, specs: &UploadSpecs) -> Result<Vec<crate::daemon::client::OutFile>> {
    use crate::run;
    let flags = specs
        .private
        .iter()
        .map(|s| run::Spec::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let refs = match (specs.no_references, run::references_path()) {
        (false, Some(p)) => run::load_references(&p)?,
        _ => Vec::new(),
    };
    let merged = run::merge(flags, refs)?;
    Ok(run::read_all(&merged, cfg.limits.max_file_bytes)?)
}

/// `privy run`: upload, attach the ticket, run, pass the exit status on.
fn run_command(cli: &Cli, a: &RunArgs) -> Result<()> {
    use crate::run::{self, Route};
    let cfg = load_config(cli)?;
    let files = collect_files(&cfg, &a.specs)?;
    let mut cmd = a.cmd.clone();
    if files.is_empty() {
        // Nothing private: run the command as it is.
        run::exit_like(run::run_child(&cmd, None)?);
    }
    let client = client_for(&cfg, a.specs.socket.as_deref());
    let created = run::upload(&client, &files, crate::daemon::Scope::Run, a.specs.ttl)?;
    drop(files);
    let ticket = created.ticket;
    let (route, restore) = match &a.bundle {
        Some(b) => {
            let binary = std::env::current_exe()?.canonicalize()?;
            let cfg_arg = cli.config.as_deref().map(absolute).transpose()?;
            let original = run::attach_bundle(b, &ticket, &binary, cfg_arg.as_deref())?;
            (Route::Bundle, Some((b.clone(), original)))
        }
        None => {
            let annotations = run::engine(&cmd) != "docker" || run::docker_passes_annotations(&cmd);
            (run::attach(&mut cmd, &ticket, annotations), None)
        }
    };
    if route == Route::Env {
        note(format_args!(
            "privy: {} takes no annotation that privy knows; the ticket is in $PRIVY_TICKET: pass it to the container as the annotation {}=$PRIVY_TICKET",
            cmd[0],
            crate::plan::TICKET_ANNOTATION
        ));
    }
    let status = run::run_child(&cmd, Some((run::TICKET_ENV, &ticket)));
    if let Some((b, original)) = restore {
        if let Err(e) = run::restore_bundle(&b, &original) {
            note(format_args!("privy: {e}"));
        }
    }
    let status = status?;
    // The container is gone with the command: so is its ticket. Otherwise
    // it lives while the container exists (restarts re-inject the files).
    let gone = match route {
        Route::Args { ephemeral } => ephemeral,
        Route::Bundle => run::is_foreground_runtime_run(&cmd),
        Route::Env => false,
    };
    if gone {
        match client.delete(&ticket) {
            Ok(()) => {}
            Err(crate::daemon::client::ClientError::Api {
                status: 404 | 410, ..
            }) => {}
            Err(e) => note(format_args!("privy: could not drop the ticket: {e}")),
        }
    }
    run::exit_like(status)
}

fn kv(list: &[String], what: &str) -> Result<std::collections::BTreeMap<String, String>> {
    list.iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("{what} {s:?}: expected KEY=VALUE"),
        })
        .collect()
}

fn plugin_command(cli: &Cli, command: &PluginCommand) -> Result<()> {
    use crate::plugin::scaffold;
    match command {
        PluginCommand::New { name, dir } => {
            let dir = dir.clone().unwrap_or_else(|| PathBuf::from(name));
            scaffold::new_plugin(&dir, name)?;
            outln!(
                "wrote {}; build it with: cd {} && cargo build --release",
                dir.display(),
                dir.display()
            );
            Ok(())
        }
        PluginCommand::Check { file } => {
            let cfg = load_config(cli)?;
            let wasm = read_wasm(file)?;
            let host = PluginHost::new(&cfg.cache_dir)?;
            let plugin = host
                .load_bytes(&wasm)
                .with_context(|| format!("{}", file.display()))?;
            use sha2::Digest;
            outln!(
                "{}: a privy source, contract privy:source@{}",
                file.display(),
                crate::plugin::WIT_VERSION
            );
            outln!("sha256: {}", hex::encode(sha2::Sha256::digest(&wasm)));
            outln!("imports:");
            for i in plugin.imports() {
                outln!("  {i}");
            }
            Ok(())
        }
        PluginCommand::Run(a) => plugin_run(cli, a),
        PluginCommand::List { json } => {
            let cfg = load_config(cli)?;
            let rows: Vec<serde_json::Value> = cfg
                .sources
                .iter()
                .map(|s| {
                    let digest = match crate::plugin::embedded(&s.plugin) {
                        Some(e) => format!("sha256:{} (embedded)", e.sha256),
                        None => format!("sha256:{}", s.sha256.as_deref().unwrap_or("?")),
                    };
                    serde_json::json!({
                        "name": s.name, "plugin": s.plugin, "digest": digest, "required": s.required,
                        "when": s.when, "grant": s.grant, "config_keys": s.config.keys().collect::<Vec<_>>(),
                    })
                })
                .collect();
            if *json {
                let out = serde_json::json!({"sources": rows, "limits": cfg.limits, "target": cfg.target});
                outln!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(());
            }
            let l = &cfg.limits;
            outln!(
                "target {}; limits: {} B/file, {} B total, {} files; plugin memory {} B, CPU {} ms, timeout {} ms",
                cfg.target, l.max_file_bytes, l.max_total_bytes, l.max_files, l.plugin_memory_bytes, l.plugin_cpu_ms, l.plugin_timeout_ms
            );
            for (s, r) in cfg.sources.iter().zip(&rows) {
                outln!(
                    "{}  plugin={}  {}  required={}",
                    s.name,
                    s.plugin,
                    r["digest"].as_str().unwrap_or(""),
                    s.required
                );
                if let Some(w) = &s.when {
                    outln!("    when: {}", serde_json::to_string(w)?);
                }
                let g = &s.grant;
                let show = |v: &[PathBuf]| {
                    v.iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                outln!(
                    "    grant: dirs [{}] files [{}] hosts [{}]",
                    show(&g.dirs),
                    show(&g.files),
                    g.hosts.join(", ")
                );
            }
            Ok(())
        }
    }
}

fn plugin_run(cli: &Cli, a: &PluginRunArgs) -> Result<()> {
    use crate::config::Grant;
    use crate::plugin::{Call, PluginRequest};
    let cfg = load_config(cli)?;
    let wasm = read_wasm(&a.file)?;
    let host = PluginHost::new(&cfg.cache_dir)?;
    let name = a
        .file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let plugin = host
        .load_bytes(&wasm)
        .with_context(|| format!("source {name:?}"))?;
    let grant = Grant {
        dirs: a.grant_dirs.clone(),
        files: a.grant_files.clone(),
        hosts: a.grant_hosts.clone(),
        daemon: false,
    };
    let config = kv(&a.config_values, "--config-value")?;
    let stage = if a.stage == "build" {
        crate::request::Stage::Build
    } else {
        crate::request::Stage::Run
    };
    let mut req = PluginRequest::bare(&a.container_id, stage);
    req.annotations = kv(&a.annotation, "--annotation")?;
    let call = Call {
        source: &name,
        grant: &grant,
        config: &config,
        limits: &cfg.limits,
        request: &req,
        daemon: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let files = rt
        .block_on(host.fetch(&plugin, call))
        .map_err(|e| crate::fetch::FetchError {
            name: name.clone(),
            error: e,
        })?;
    let fetched = crate::fetch::Fetched {
        source: name.clone(),
        precedence: crate::plan::Precedence::Operator,
        files,
    };
    let checked = crate::check::check(vec![fetched], &cfg.limits)?;
    let (auditor, keyed) = match crate::audit::Auditor::load(&cfg.audit_key) {
        Some(a) => (a, "host audit key"),
        None => (crate::audit::Auditor::ephemeral(), "a one-off key"),
    };
    if a.json {
        let files: Vec<serde_json::Value> = checked
            .files
            .iter()
            .map(|f| {
                serde_json::json!({"path": f.path.as_str(), "size": f.data.len(), "mode": format!("{:o}", f.mode),
                    "fingerprint": auditor.fingerprint(f.data.expose())})
            })
            .collect();
        let out = serde_json::json!({"source": name, "count": checked.files.len(), "bytes": checked.total_bytes(), "files": files});
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!(
            "source {name:?}: {} files, {} bytes (fingerprints under {keyed})",
            checked.files.len(),
            checked.total_bytes()
        );
        for f in &checked.files {
            outln!(
                "  {:04o} {:>8}  {}  {}",
                f.mode,
                f.data.len(),
                auditor.fingerprint(f.data.expose()),
                f.path
            );
        }
    }
    Ok(())
}

/// Load every configured plugin: digest, pinning, world and version are
/// checked, and compiled code lands in the cache, so the first container
/// start does not pay for Cranelift (`install`, `config check`).
fn load_all(cfg: &Config) -> Result<()> {
    let host = PluginHost::new(&cfg.cache_dir)?;
    for s in &cfg.sources {
        let p = crate::plan::plan_source(s, &cfg.limits);
        host.load(&p.plugin)
            .with_context(|| format!("source {:?}", s.name))?;
    }
    // The built-in upload source runs for any container with a ticket.
    if !cfg.sources.iter().any(|s| s.plugin == "upload") {
        host.load(&crate::plan::PluginRef::Embedded("upload".into()))
            .context("source \"upload\"")?;
    }
    Ok(())
}

/// A `.wasm` named on the command line: a regular file, opened without
/// blocking (a FIFO is refused at once, not waited on).
fn read_wasm(file: &Path) -> Result<Vec<u8>> {
    crate::plugin::files::read_regular(file, crate::plugin::MAX_WASM_BYTES)
        .with_context(|| format!("{}", file.display()))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_owned());
    }
    Ok(std::env::current_dir()?.join(p))
}

fn verb(un: bool) -> &'static str {
    if un {
        "removed"
    } else {
        "added"
    }
}

fn prep(un: bool) -> &'static str {
    if un {
        "from"
    } else {
        "to"
    }
}

/// `privy build`: errors before the engine ran or after it succeeded mean
/// privy could not check the image: exit 2, as `privy scan` does.
fn build_command(cli: &Cli, args: &BuildArgs) -> Result<()> {
    use crate::build::{self, Exit};
    let checked = (|| -> Result<i32> {
        let cfg = load_config(cli)?;
        let files = collect_files(&cfg, &args.specs)?;
        let client = client_for(&cfg, args.specs.socket.as_deref());
        let opts = build::BuildOptions {
            files,
            ttl: args.specs.ttl,
            rm_on_leak: args.rm_on_leak,
            engine: args.engine.clone(),
            binary: std::env::current_exe()?.canonicalize()?,
            config_path: cli.config.as_deref().map(absolute).transpose()?,
        };
        Ok(build::run(&cfg, &client, opts)?)
    })();
    match checked {
        Ok(0) => Ok(()),
        Ok(code) => Err(Exit(code).into()),
        Err(e) => {
            note(format_args!(
                "privy: build: {}",
                format!("{e:#}").replace('\n', " ")
            ));
            Err(Exit(2).into())
        }
    }
}
