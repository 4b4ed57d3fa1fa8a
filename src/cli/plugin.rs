//! `privy plugin new|check|run|list`.

use super::{common, Cli, Outcome};
use crate::plugin::PluginHost;
use anyhow::{Context, Result};
use clap::Subcommand;
use std::path::PathBuf;

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

pub(super) fn execute(cli: &Cli, command: &PluginCommand) -> Result<Outcome> {
    super::logging::init(None, "warn");
    command_(cli, command)?;
    Ok(Outcome::Success)
}

fn command_(cli: &Cli, command: &PluginCommand) -> Result<()> {
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
            let cfg = common::load_config(cli)?;
            let wasm = common::read_wasm(file)?;
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
            let cfg = common::load_config(cli)?;
            let rows: Vec<serde_json::Value> = cfg
                .sources
                .iter()
                .map(|s| {
                    let embedded = match &s.plugin {
                        crate::config::PluginRef::Embedded(n) => crate::plugin::embedded(n),
                        _ => None,
                    };
                    let digest = match embedded {
                        Some(e) => format!("sha256:{} (embedded)", e.sha256),
                        None => format!("sha256:{}", s.plugin.sha256().unwrap_or("?")),
                    };
                    serde_json::json!({
                        "name": s.name, "plugin": s.plugin.as_written(), "digest": digest, "required": s.required,
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
                    s.plugin.as_written(),
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
                    g.hosts
                        .iter()
                        .map(|h| h.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Ok(())
        }
    }
}

fn plugin_run(cli: &Cli, a: &PluginRunArgs) -> Result<()> {
    use crate::config::{Grant, PluginRef, SourceConfig};
    use crate::pipeline::{gather, plan, request::Request};
    let cfg = common::load_config(cli)?;
    let wasm = common::read_wasm(&a.file)?;
    let name = a
        .file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A bad --grant-host gives the line a bad grant always gave.
    let hosts = a
        .grant_hosts
        .iter()
        .map(|h| h.parse())
        .collect::<Result<Vec<_>, String>>()
        .map_err(|e| anyhow::anyhow!("source {name:?}: grant: {e}"))?;
    let source = SourceConfig {
        name: name.clone(),
        // Run as given: no owner or digest check (it is not installed).
        plugin: PluginRef::Inline(wasm.into()),
        required: true,
        refresh: None,
        when: None,
        grant: Grant {
            dirs: a.grant_dirs.clone(),
            files: a.grant_files.clone(),
            hosts,
            daemon: false,
        },
        config: common::kv(&a.config_values, "--config-value")?,
    };
    let stage = a.stage.parse().map_err(anyhow::Error::msg)?;
    let req = Request::synthetic(
        &a.container_id,
        stage,
        common::kv(&a.annotation, "--annotation")?,
    );
    // Exactly the one component given, as the hook would run it: planned
    // by hand (an operator source), never `plan::plan`, which would add
    // the ticket source for an `io.privy.ticket` annotation.
    let planned = vec![plan::plan_source(&source, &cfg.limits)];
    let checked = gather::gather_planned(&cfg, planned, &req)?.checked;
    // When the source said its files expire (clamped as the hook would).
    let expires = checked.expires.map(|at| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        (
            at,
            crate::logging::rfc3339_seconds(at),
            at.saturating_sub(now),
        )
    });
    let (auditor, keyed) = match crate::pipeline::audit::Auditor::load(&cfg.audit_key) {
        Some(a) => (a, "host audit key"),
        None => (
            crate::pipeline::audit::Auditor::ephemeral(),
            "a one-off key",
        ),
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
        let mut out = serde_json::json!({"source": name, "count": checked.files.len(), "bytes": checked.total_bytes(), "files": files});
        if let Some((at, shown, _)) = &expires {
            out["expires"] = serde_json::json!({"unix": at, "utc": shown});
        }
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
        if let Some((at, shown, left)) = &expires {
            outln!("  expires {shown} (unix {at}, in {left} s)");
        }
    }
    Ok(())
}
