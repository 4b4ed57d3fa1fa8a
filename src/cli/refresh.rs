//! `privy refresh CONTAINER...|--all`: give running containers the current
//! version of their files now (root; or a rootless container's own user).
//! And the hidden `refresh-apply`, the single-threaded child that enters
//! one container and writes there.

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
    // Root refreshes what root's hooks served; a user, the rootless
    // containers its own hooks served (their records are in the user's
    // state directory, and the refresh child joins the container's user
    // namespace, which the user owns).
    let root = crate::sys::userns::is_real_root();
    let ids = if a.all {
        crate::pipeline::rotate::served_ids(&cfg)
    } else {
        a.containers.clone()
    };
    let exe = std::path::PathBuf::from("/proc/self/exe");
    let mut failed = 0usize;
    for id in &ids {
        let result = if root {
            crate::pipeline::rotate::refresh(&cfg, id, &exe)
        } else {
            crate::pipeline::rotate::refresh_with(
                &cfg,
                id,
                &exe,
                crate::pipeline::rotate::Wait::Block,
                &mut |cfg, planned, req| via_agent(cli, cfg, planned, req),
            )
        };
        match result {
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

/// A user's refresh gathers through the node agent, as its hook did: the
/// agent runs the sources `when.users` grants the user with its own
/// rights. With no agent, the sources run here, as the user.
fn via_agent(
    cli: &Cli,
    cfg: &crate::config::Config,
    planned: Vec<crate::pipeline::plan::PlannedSource>,
    req: &crate::pipeline::request::Request,
) -> Result<crate::pipeline::gather::Gathered, crate::pipeline::gather::GatherError> {
    use crate::daemon::client::{Client, ClientError};
    use crate::pipeline::gather::{gather_planned, GatherError, Gathered};
    let started = std::time::Instant::now();
    let state = crate::oci::State {
        id: req.container_id.clone(),
        pid: req.pid,
        bundle: req.bundle.clone(),
        annotations: req.annotations.clone(),
    };
    let state = serde_json::to_vec(&state).expect("serializes");
    let (path, _) = common::config_path(cli);
    let path = std::path::absolute(&path).unwrap_or(path);
    let client = Client::new(
        cfg.daemon.socket_path(),
        std::time::Duration::from_millis(cfg.limits.plugin_timeout_ms.saturating_mul(2)),
    );
    match client.refresh_files(&state, Some(&path)) {
        Ok(checked) => Ok(Gathered {
            planned,
            checked,
            fetch_time: started.elapsed(),
        }),
        Err(ClientError::NotRunning(_)) => gather_planned(cfg, planned, req),
        Err(ClientError::Api { status, .. }) if status == crate::daemon::proto::HOOK_NOT_SERVED => {
            gather_planned(cfg, planned, req)
        }
        Err(e) => Err(GatherError::Agent(e.to_string())),
    }
}

/// The refresh child: target and files on stdin, changes on stdout.
pub(super) fn child() -> Result<Outcome> {
    crate::sys::process::harden();
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    crate::pipeline::rotate::child_main(&mut stdin, &mut stdout)?;
    Ok(Outcome::Success)
}
