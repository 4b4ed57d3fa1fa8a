//! `privy refresh CONTAINER...|--all`: give running containers the current
//! version of their files now (root). And the hidden `refresh-apply`, the
//! single-threaded child that enters one container and writes there.

use super::{common, Cli, Outcome};
use anyhow::{bail, Result};

#[derive(clap::Args, Debug)]
pub struct RefreshArgs {
    /// Containers to refresh (ids as the runtime knows them)
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub containers: Vec<String>,
    /// Every running container the hook served on this host
    #[arg(long)]
    pub all: bool,
}

/// Refresh each container; one line per failure, the others still done.
pub(super) fn execute(cli: &Cli, a: &RefreshArgs) -> Result<Outcome> {
    crate::sys::process::harden();
    let cfg = common::load_config(cli)?;
    super::logging::init(Some(&cfg), "info");
    if !crate::sys::userns::is_real_root() {
        bail!("privy refresh enters containers' mount namespaces: run it as root");
    }
    let ids = if a.all {
        crate::pipeline::rotate::served_ids(&cfg)
    } else {
        a.containers.clone()
    };
    let exe = std::path::PathBuf::from("/proc/self/exe");
    let mut failed = 0usize;
    for id in &ids {
        match crate::pipeline::rotate::refresh(&cfg, id, &exe) {
            Ok(c) => outln!(
                "{id}: {} changed, {} added, {} removed, {} unchanged",
                c.changed.len(),
                c.added.len(),
                c.removed.len(),
                c.unchanged
            ),
            Err(e) => {
                // `--all` walks every record: a stopped container whose
                // poststop has not run yet is no failure.
                if a.all && e.is_stopped() {
                    continue;
                }
                tracing::error!("refresh failed: {e}");
                super::note(format_args!("privy: {e}"));
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} containers not refreshed", ids.len());
    }
    Ok(Outcome::Success)
}

/// The refresh child: target and files on stdin, changes on stdout.
pub(super) fn child() -> Result<Outcome> {
    crate::sys::process::harden();
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    crate::pipeline::rotate::child_main(&mut stdin, &mut stdout)?;
    Ok(Outcome::Success)
}
