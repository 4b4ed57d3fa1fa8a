//! Per-run uploads end to end: a real `privy daemon` process, `privy run`
//! and `privy upload`, real podman (with privy's hooks.d, on crun and runc)
//! and real runc/crun bundles. Secrets are random per test; their source
//! files live on a tmpfs (/dev/shm) so that the disk searches below are
//! meaningful. No test prints a secret.

mod bundle;
mod cli;
mod ctr;
mod hooked;
mod podman;
mod shim;
mod systemd;
mod users;

use crate::util::{self, search_disk, sha256_hex, text, Bundle, Daemon, World};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A world with a daemon section, a socket directory others can enter,
/// and a tmpfs directory for the files users upload.
pub struct Setup {
    pub w: World,
    pub socket: PathBuf,
    pub shm: tempfile::TempDir,
    pub hooks: PathBuf,
    _sockdir: tempfile::TempDir,
}

impl Setup {
    pub fn new(extra_top: &str) -> Setup {
        Setup::with_daemon_keys(extra_top, "")
    }

    /// With `daemon_keys` (TOML lines) added to the `[daemon]` table.
    pub fn with_daemon_keys(extra_top: &str, daemon_keys: &str) -> Setup {
        Setup::with_keys(extra_top, daemon_keys, "")
    }

    /// ... and `source_keys` (TOML lines) added to the `host-dir` source.
    pub fn with_keys(extra_top: &str, daemon_keys: &str, source_keys: &str) -> Setup {
        let sockdir = tempfile::Builder::new()
            .prefix("privy-sock-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(sockdir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = sockdir.path().join("privy.sock");
        let w = World::new(
            &format!("{extra_top}\n[daemon]\nsocket = {socket:?}\nsweep_secs = 1\n{daemon_keys}\n"),
            source_keys,
        );
        let shm = tempfile::Builder::new()
            .prefix("privy-up-")
            .tempdir_in("/dev/shm")
            .unwrap();
        std::fs::set_permissions(shm.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let hooks = w.dir.path().join("hooks.d");
        // Compile host-dir and upload into the shared cache once, before
        // any hook (possibly a hundred at a time) needs them.
        static WARM: OnceLock<()> = OnceLock::new();
        WARM.get_or_init(|| {
            let o = w.privy(&["config", "check"]);
            assert!(o.status.success(), "{}", text(&o.stderr));
        });
        Setup {
            w,
            socket,
            shm,
            hooks,
            _sockdir: sockdir,
        }
    }

    /// For a podman test: a setup with privy's hooks.d entries installed
    /// and its daemon running; `None` (the test skips, saying why) without
    /// podman.
    pub fn for_podman() -> Option<(Setup, Daemon)> {
        if !podman_ready() {
            return None;
        }
        let st = Setup::new("");
        st.install_hooks();
        let d = st.daemon();
        Some((st, d))
    }

    pub fn daemon(&self) -> Daemon {
        Daemon::start(&self.w, &self.socket)
    }

    /// A user's file on tmpfs, with `mode`.
    pub fn user_file(&self, name: &str, data: &[u8], mode: u32) -> PathBuf {
        let p = self.shm.path().join(name);
        std::fs::write(&p, data).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    /// privy's hooks.d entries, for `podman --hooks-dir`.
    pub fn install_hooks(&self) {
        self.w.install_hooks_dir(&self.hooks);
    }

    /// `podman [--runtime R] --hooks-dir ours ARGS...` as a command line.
    pub fn podman(&self, runtime: &str, args: &[&str]) -> Vec<String> {
        let mut v = vec![
            "podman".to_string(),
            "--runtime".into(),
            runtime.into(),
            "--hooks-dir".into(),
            self.hooks.display().to_string(),
        ];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    /// `privy --config ours ARGS...`, with HOME in the world (so the
    /// user's references file is the world's).
    pub fn privy(&self, args: &[String]) -> Output {
        self.privy_stdin(args, b"")
    }

    pub fn privy_stdin(&self, args: &[String], stdin: &[u8]) -> Output {
        util::output_with_stdin(
            Command::new("timeout")
                .arg("120")
                .arg(util::PRIVY)
                .args(["--config", self.w.config.to_str().unwrap()])
                .args(args)
                .env("HOME", self.home())
                .env_remove("XDG_CONFIG_HOME")
                .env_remove("PRIVY_SOCKET"),
            stdin,
        )
    }

    pub fn home(&self) -> PathBuf {
        let h = self.w.dir.path().join("home");
        std::fs::create_dir_all(&h).unwrap();
        h
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn podman_image() -> &'static str {
    util::busybox_image()
}

fn podman_ready() -> bool {
    util::e2e_ready("podman")
}

/// The ticket a container carries.
fn ticket_of(name: &str) -> String {
    let out = Command::new("podman")
        .args([
            "inspect",
            "--format",
            "{{index .Config.Annotations \"io.privy.ticket\"}}",
            name,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

pub(crate) fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------- runc/crun

// ------------------------------------------------------------------- podman

/// A copy of the privy binary that any uid can run.
pub fn privy_for_anyone() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let d = util::process_dir("privy-anyone", 0o755);
        // privy and, next to it, the thin hook that `privy install` names
        // in hooks.d entries (without it they would run `privy hook`, and
        // no rootless start would ever ask the agent). A hard link where
        // the file system allows (no 350 MB copy of a debug binary per
        // run), else a copy.
        for (from, name) in [(util::PRIVY, "privy"), (util::PRIVY_HOOK, "privy-hook")] {
            let p = d.join(name);
            if std::fs::hard_link(from, &p).is_err() {
                std::fs::copy(from, &p).unwrap();
            }
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        d.join("privy")
    })
    .clone()
}

/// A config any uid can read (the daemon's socket comes from PRIVY_SOCKET).
pub fn config_for_anyone() -> String {
    let p = privy_for_anyone().with_file_name("privy.toml");
    std::fs::write(&p, "log_file = \"\"\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    p.display().to_string()
}

/// Run as uid/gid 65534 (nobody).
pub fn as_nobody(cmd: &[String], socket: &Path) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(cmd)
        .env("PRIVY_SOCKET", socket)
        .env("HOME", "/nonexistent")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}
