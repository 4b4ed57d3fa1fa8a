//! Command-line interface: flags and dispatch. Everything it calls lives in
//! the library; this module only parses, sets up logging and prints.

use crate::config::{self, Config};
use crate::oci::install;
use crate::plugin::PluginHost;
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::io::Read;
use std::path::{Path, PathBuf};

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
}

#[derive(Subcommand, Debug, Clone, Copy)]
pub enum HookStage {
    /// createRuntime: fetch, check and inject the private files
    CreateRuntime,
    /// poststop: remove mountpoint directories privy created
    Poststop,
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("where").required(true).args(["bundle", "hooks_dir"])))]
pub struct InstallArgs {
    /// OCI bundle whose config.json gets createRuntime and poststop hooks (runc, crun)
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// hooks.d directory for podman, buildah and CRI-O (e.g. /usr/share/containers/oci/hooks.d)
    #[arg(long)]
    pub hooks_dir: Option<PathBuf>,
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
fn init_logging(cfg: Option<&Config>, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PRIVY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let file = cfg
        .filter(|c| !c.log_file.as_os_str().is_empty())
        .and_then(|c| {
            if let Some(d) = c.log_file.parent() {
                let _ = std::fs::create_dir_all(d);
            }
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&c.log_file)
                .ok()
        });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match file {
        Some(f) => builder
            .json()
            .with_writer(std::sync::Mutex::new(f))
            .try_init(),
        None => builder.with_writer(std::io::stderr).try_init(),
    };
}

/// Run the CLI; the caller prints errors.
pub fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Hook { stage } => {
            crate::hook::harden_process();
            let cfg = load_config(&cli)?;
            init_logging(Some(&cfg), "info");
            let mut stdin = Vec::new();
            std::io::stdin()
                .read_to_end(&mut stdin)
                .context("reading OCI state from stdin")?;
            match stage {
                HookStage::CreateRuntime => {
                    crate::hook::create_runtime(&cfg, &stdin).map_err(|e| {
                        tracing::error!("createRuntime failed: {e}");
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
                warm_cache(&cfg)?;
            }
            if let Some(b) = &args.bundle {
                install::bundle(b, &binary, cfg_arg.as_deref(), args.uninstall)?;
                println!(
                    "{} privy hooks {} {}",
                    verb(args.uninstall),
                    prep(args.uninstall),
                    b.join("config.json").display()
                );
            }
            if let Some(d) = &args.hooks_dir {
                for f in install::hooks_dir(d, &binary, cfg_arg.as_deref(), args.uninstall)? {
                    println!(
                        "{} {}",
                        if args.uninstall { "removed" } else { "wrote" },
                        f.display()
                    );
                }
            }
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            init_logging(None, "warn");
            let cfg = load_config(&cli)?;
            let host = PluginHost::new(&cfg.cache_dir)?;
            for s in &cfg.sources {
                let p = crate::plan::plan_source(s, &cfg.limits);
                host.load(&p.plugin)
                    .with_context(|| format!("source {:?}", s.name))?;
            }
            print!("{}", cfg.effective_toml());
            Ok(())
        }
    }
}

/// Precompile every configured plugin into the cache, so the first
/// container start does not pay for Cranelift.
fn warm_cache(cfg: &Config) -> Result<()> {
    let host = PluginHost::new(&cfg.cache_dir)?;
    for s in &cfg.sources {
        let p = crate::plan::plan_source(s, &cfg.limits);
        host.load(&p.plugin)
            .with_context(|| format!("source {:?}", s.name))?;
    }
    Ok(())
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

/// Fail early with a clear message rather than deep inside a command.
pub fn require_root(what: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} must run as root");
    }
    Ok(())
}
