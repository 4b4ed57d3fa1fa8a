//! A real `privy daemon` process for a test's world, stopped when dropped.

use super::World;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running `privy daemon`, stopped (SIGTERM) when dropped.
pub struct Daemon {
    child: Option<Child>,
    config: PathBuf,
}

impl Daemon {
    pub fn start(w: &World, socket: &Path) -> Daemon {
        Daemon::start_with(w, socket, None)
    }

    /// Start with the open-file limit (soft and hard) at `nofile`, as on a
    /// host whose service manager sets it.
    pub fn start_with(w: &World, socket: &Path, nofile: Option<u64>) -> Daemon {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(super::PRIVY);
        if let Some(n) = nofile {
            // SAFETY: setrlimit is async-signal-safe.
            unsafe {
                cmd.pre_exec(move || {
                    let l = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd
            .args(["--config", w.config.to_str().unwrap(), "daemon"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(w.dir.path().join("daemon.log")).unwrap(),
            ))
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            assert!(Instant::now() < deadline, "daemon did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon {
            child: Some(child),
            config: w.config.clone(),
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: what a crash or an OOM kill looks like.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and the daemon's exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        c.wait().unwrap()
    }

    /// `privy ARGS` against this daemon's config.
    pub fn privy(&self, args: &[&str]) -> Output {
        Command::new(super::PRIVY)
            .args(["--config", self.config.to_str().unwrap()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
    }
}
