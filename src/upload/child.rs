//! Running the user's command to its end, signals forwarded, its status
//! returned (main leaves as it did).

use super::UploadError;

/// Run `cmd` to completion, forwarding SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2
/// to it (SIGINT and SIGQUIT from a terminal reach it directly, so privy
/// only outlives them). Returns the child's exit status.
pub fn run(
    cmd: &[String],
    env: Option<(&str, &str)>,
) -> Result<std::process::ExitStatus, UploadError> {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| UploadError::Spawn(cmd[0].clone(), e))?;
    rt.block_on(async {
        let mut c = tokio::process::Command::new(&cmd[0]);
        c.args(&cmd[1..]);
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        let mut sigs = Vec::new();
        for k in [
            SignalKind::terminate(),
            SignalKind::hangup(),
            SignalKind::user_defined1(),
            SignalKind::user_defined2(),
            SignalKind::interrupt(),
            SignalKind::quit(),
        ] {
            sigs.push((
                k,
                signal(k).map_err(|e| UploadError::Spawn(cmd[0].clone(), e))?,
            ));
        }
        let mut child = c
            .spawn()
            .map_err(|e| UploadError::Spawn(cmd[0].clone(), e))?;
        let pid = child.id().map(|p| nix::unistd::Pid::from_raw(p as i32));
        loop {
            let recv = futures_util::future::select_all(
                sigs.iter_mut()
                    .map(|(k, s)| Box::pin(async move { s.recv().await.map(|_| *k) })),
            );
            tokio::select! {
                st = child.wait() => return st.map_err(|e| UploadError::Spawn(cmd[0].clone(), e)),
                (got, _, _) = recv => {
                    let Some(kind) = got else { continue };
                    let forward = kind != SignalKind::interrupt() && kind != SignalKind::quit();
                    if let (true, Some(pid)) = (forward, pid) {
                        if let Ok(sig) = nix::sys::signal::Signal::try_from(kind.as_raw_value()) {
                            let _ = nix::sys::signal::kill(pid, sig);
                        }
                    }
                }
            }
        }
    })
}
