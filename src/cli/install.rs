//! `privy install`: privy's hooks into a bundle or a hooks.d directory,
//! and the daemon's systemd units.

use super::{common, Cli, Outcome};
use crate::oci::install;
use anyhow::Result;
use std::path::PathBuf;

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
    /// The privy binary [default: this one]; the hooks run `privy-hook` next to it when it is there, else this binary
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Remove what install added
    #[arg(long)]
    pub uninstall: bool,
}

pub(super) fn execute(cli: &Cli, a: &InstallArgs) -> Result<Outcome> {
    super::logging::init(None, "warn");
    let cfg = common::load_config(cli)?;
    let binary = match &a.binary {
        Some(b) => b.clone(),
        None => std::env::current_exe()?.canonicalize()?,
    };
    // The runtimes run the thin hook when it is installed next to privy.
    let hook = install::hook_binary(&binary);
    // A non-default config must be passed to the hook explicitly.
    let cfg_arg = cli.config.as_deref().map(common::absolute).transpose()?;
    if !a.uninstall {
        crate::plugin::precompile(&cfg)?;
    }
    if let Some(b) = &a.bundle {
        install::bundle(b, &hook, cfg_arg.as_deref(), a.uninstall)?;
        outln!(
            "{} privy hooks {} {}",
            verb(a.uninstall),
            prep(a.uninstall),
            b.join("config.json").display()
        );
    }
    if a.systemd {
        let socket = cfg.daemon.socket_path();
        for f in install::systemd(
            &a.unit_dir,
            &binary,
            cfg_arg.as_deref(),
            &socket,
            &cfg.cache_dir,
            a.uninstall,
        )? {
            outln!(
                "{} {}",
                if a.uninstall { "removed" } else { "wrote" },
                f.display()
            );
        }
        if !a.uninstall {
            outln!(
                "enable it with: systemctl daemon-reload && systemctl enable --now privy.socket"
            );
        }
    }
    if let Some(d) = &a.hooks_dir {
        for f in install::hooks_dir(d, &hook, cfg_arg.as_deref(), a.uninstall)? {
            outln!(
                "{} {}",
                if a.uninstall { "removed" } else { "wrote" },
                f.display()
            );
        }
    }
    Ok(Outcome::Success)
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
