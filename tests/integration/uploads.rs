//! Per-run uploads end to end: a real `privy daemon` process, `privy run`
//! and `privy upload`, real podman (with privy's hooks.d, on crun and runc)
//! and real runc/crun bundles. Secrets are random per test; their source
//! files live on a tmpfs (/dev/shm) so that the disk searches below are
//! meaningful. No test prints a secret.

use crate::util::{self, text, Bundle, World};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
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
        let mut cmd = Command::new(util::PRIVY);
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
        Command::new(util::PRIVY)
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
        let sockdir = tempfile::Builder::new()
            .prefix("privy-sock-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(sockdir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = sockdir.path().join("privy.sock");
        let w = World::new(
            &format!("{extra_top}\n[daemon]\nsocket = {socket:?}\nsweep_secs = 1\n{daemon_keys}\n"),
            "",
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
        let out = self
            .w
            .privy(&["install", "--hooks-dir", self.hooks.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
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

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
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

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------- runc/crun

on_both_runtimes!(bundle_gets_uploads_and_an_upload_beats_host_dir);

fn bundle_gets_uploads_and_an_upload_beats_host_dir(rt: &str) {
    let st = Setup::new("");
    let _d = st.daemon();
    let host = util::secret("host");
    let up = util::secret("upload");
    let other = util::secret("other");
    st.w.put("api.key", &host, 0o644);
    let src = st.user_file("api.key", &up, 0o600);
    let src2 = st.user_file("other", &other, 0o640);
    let b = Bundle::new(
        "sha256sum /run/private/api.key /run/private/deep/other; stat -c '%a %n' /run/private/api.key /run/private/deep/other",
    );
    let out = st.privy(&[
        "run".into(),
        "--private".into(),
        format!("{}:api.key", src.display()),
        "-p".into(),
        format!("{}:deep/other", src2.display()),
        "--bundle".into(),
        b.path().display().to_string(),
        "--".into(),
        rt.into(),
        "run".into(),
        "-b".into(),
        b.path().display().to_string(),
        b.id.clone(),
    ]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "privy run failed: {}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains(&sha256_hex(&up)),
        "upload not seen: {stdout}"
    );
    assert!(stdout.contains(&sha256_hex(&other)));
    assert!(
        !stdout.contains(&sha256_hex(&host)),
        "host-dir file must lose to the upload"
    );
    assert!(stdout.contains("600 /run/private/api.key"), "{stdout}");
    assert!(stdout.contains("600 /run/private/deep/other"), "{stdout}");
    // The override is audited by name, never by value.
    let log = st.w.log();
    let log_text = text(&log);
    assert!(log_text.contains("api.key"), "audit names the file");
    assert!(
        log_text.contains("override"),
        "audit records the override: {log_text}"
    );
    for secret in [&host, &up, &other] {
        assert!(!util::contains(&log, secret));
        assert!(util::files_containing(b.path(), secret).is_empty());
    }
    // privy run restored the bundle and dropped the ticket: the container is gone.
    let cfg = std::fs::read_to_string(b.path().join("config.json")).unwrap();
    assert!(!cfg.contains("io.privy.ticket"));
}

// ------------------------------------------------------------------- podman

/// Every regular file under `roots` (symlinks not followed, devices
/// skipped) that contains `needle`, by grep: fast enough for all of
/// /var/lib/containers. The pattern file lives on tmpfs, outside `roots`.
fn search_disk(roots: &[PathBuf], needle: &[u8]) -> Vec<PathBuf> {
    let pat = tempfile::Builder::new()
        .prefix("privy-pattern-")
        .tempfile_in("/dev/shm")
        .unwrap();
    std::fs::write(pat.path(), needle).unwrap();
    let out = Command::new("grep")
        .args(["-r", "-l", "-a", "-F", "-D", "skip", "-s", "-f"])
        .arg(pat.path())
        .args(roots)
        .output()
        .unwrap();
    // 0: found, 1: not found, 2: some file unreadable (sockets, races).
    assert!(out.status.code().is_some_and(|c| c <= 2), "grep failed");
    text(&out.stdout).lines().map(PathBuf::from).collect()
}

#[test]
fn podman_runs_get_uploads_on_crun_and_runc_and_leave_no_trace_on_disk() {
    if !podman_ready() {
        return;
    }
    let image = podman_image();
    let st = Setup::new("");
    st.install_hooks();
    let _d = st.daemon();
    let mut secrets = Vec::new();
    for rt in ["crun", "runc"] {
        let secret = util::secret(&format!("podman-{rt}"));
        let src = st.user_file(&format!("key-{rt}"), &secret, 0o600);
        let mut args = s(&["run", "--private"]);
        args.push(format!("{}:ssh/id_ed25519", src.display()));
        args.push("--".into());
        args.extend(st.podman(
            rt,
            &[
                "run",
                "--rm",
                image,
                "sh",
                "-c",
                "sha256sum /run/private/ssh/id_ed25519; stat -c %a /run/private/ssh/id_ed25519",
            ],
        ));
        let out = st.privy(&args);
        assert!(out.status.success(), "{rt}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(stdout.contains(&sha256_hex(&secret)), "{rt}: {stdout}");
        assert!(stdout.contains("600"), "{rt}: {stdout}");
        secrets.push(secret);
    }
    // Nothing of any uploaded secret on the host's disk. First prove the
    // search finds a planted copy.
    let roots: Vec<PathBuf> = ["/var/lib/containers", "/var/tmp", "/tmp", "/run", "/etc"]
        .iter()
        .map(PathBuf::from)
        .chain([st.home()])
        .collect();
    let control = tempfile::Builder::new()
        .prefix("privy-control-")
        .tempfile_in("/var/tmp")
        .unwrap();
    std::fs::write(control.path(), &secrets[0]).unwrap();
    let hits = search_disk(&roots, &secrets[0]);
    assert_eq!(
        hits,
        vec![control.path().to_path_buf()],
        "the search must find the planted control"
    );
    drop(control);
    for secret in &secrets {
        let hits = search_disk(&roots, secret);
        assert!(hits.is_empty(), "uploaded secret found on disk: {hits:?}");
    }
}

#[test]
fn podman_restart_reinjects_and_removal_drops_the_ticket() {
    if !podman_ready() {
        return;
    }
    let image = podman_image();
    let st = Setup::new("");
    st.install_hooks();
    let d = st.daemon();
    let secret = util::secret("restart");
    let src = st.user_file("k", &secret, 0o600);
    let name = util::unique_id("restart");
    let mut args = s(&["run", "-p"]);
    args.push(format!("{}:k", src.display()));
    args.push("--".into());
    args.extend(st.podman(
        "crun",
        &["run", "-d", "--name", &name, image, "sleep", "600"],
    ));
    let out = st.privy(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cleanup = scopeguard(&name);
    let read = || {
        let o = Command::new("podman")
            .args(["exec", &name, "sha256sum", "/run/private/k"])
            .output()
            .unwrap();
        text(&o.stdout)
    };
    assert!(read().contains(&sha256_hex(&secret)));
    let ticket = ticket_of(&name);
    assert!(ticket.starts_with("pvt_"));
    // Detached: privy run left the ticket for the container's lifetime.
    let restart = Command::new("podman")
        .args([
            "--hooks-dir",
            st.hooks.to_str().unwrap(),
            "restart",
            "-t",
            "0",
            &name,
        ])
        .output()
        .unwrap();
    assert!(restart.status.success(), "{}", text(&restart.stderr));
    assert!(
        read().contains(&sha256_hex(&secret)),
        "restart must re-inject the same file"
    );
    // Removing the container drops the ticket within a sweep or two.
    let rm = Command::new("podman")
        .args(["rm", "-f", "-t", "0", &name])
        .output()
        .unwrap();
    assert!(rm.status.success());
    drop(cleanup);
    wait_until("ticket dropped after removal", 20, || {
        let o = d.privy(&["ticket", "info", &ticket]);
        !o.status.success() && text(&o.stderr).contains("container was removed")
    });
}

/// Remove a podman container on drop, whatever the test did.
fn scopeguard(name: &str) -> impl Drop + '_ {
    struct G<'a>(&'a str);
    impl Drop for G<'_> {
        fn drop(&mut self) {
            let _ = Command::new("podman")
                .args(["rm", "-f", "-t", "0", self.0])
                .output();
        }
    }
    G(name)
}

/// `podman run` with a ticket annotation; returns its output.
fn podman_with_ticket(st: &Setup, rt: &str, ticket: &str) -> Output {
    let ann = format!("io.privy.ticket={ticket}");
    let args = st.podman(
        rt,
        &[
            "run",
            "--rm",
            "--annotation",
            &ann,
            podman_image(),
            "cat",
            "/run/private/k",
        ],
    );
    Command::new("timeout")
        .arg("120")
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn expired_unknown_and_dead_daemon_tickets_stop_the_container_with_the_cause() {
    if !podman_ready() {
        return;
    }
    let st = Setup::new("");
    st.install_hooks();
    let mut d = st.daemon();
    let secret = util::secret("expire");
    let src = st.user_file("k", &secret, 0o600);
    let up = |ttl: &str| {
        let o = st.privy(&[
            "upload".into(),
            "--ttl".into(),
            ttl.into(),
            "-p".into(),
            format!("{}:k", src.display()),
        ]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        text(&o.stdout).trim().to_string()
    };
    // Expired: nobody claimed it within its TTL.
    let t = up("1");
    wait_until("ticket expiry", 20, || {
        let o = d.privy(&["ticket", "info", &t]);
        text(&o.stderr).contains("expired")
    });
    for rt in ["crun", "runc"] {
        let o = podman_with_ticket(&st, rt, &t);
        assert!(
            !o.status.success(),
            "{rt}: an expired ticket must stop the container"
        );
        assert!(
            text(&o.stderr).contains("ticket expired"),
            "{rt}: {}",
            text(&o.stderr)
        );
        assert!(!util::contains(&o.stdout, &secret));
    }
    // The daemon dies: the next start fails closed, saying so.
    let t = up("600");
    d.kill();
    for rt in ["crun", "runc"] {
        let o = podman_with_ticket(&st, rt, &t);
        assert!(!o.status.success());
        let e = text(&o.stderr);
        assert!(e.contains("privy daemon is not running"), "{rt}: {e}");
        assert!(e.contains("upload"), "{rt}: the source is named: {e}");
    }
    // A new daemon knows nothing of the old one's tickets.
    let _d2 = st.daemon();
    let o = podman_with_ticket(&st, "crun", &t);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("unknown ticket"),
        "{}",
        text(&o.stderr)
    );
    // A malformed ticket is refused as such.
    let o = podman_with_ticket(&st, "crun", "not-a-ticket");
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("malformed ticket"),
        "{}",
        text(&o.stderr)
    );
}

/// A copy of the privy binary that any uid can run.
pub fn privy_for_anyone() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("privy-anyone-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        let p = d.join("privy");
        std::fs::copy(util::PRIVY, &p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
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

#[test]
fn another_uid_can_neither_read_nor_use_nor_drop_a_ticket() {
    if !util::e2e_ready("runc") {
        return;
    }
    let st = Setup::new("");
    let _d = st.daemon();
    let secret = util::secret("owner");
    let src = st.user_file("k", &secret, 0o644);
    let o = st.privy(&["upload".into(), "-p".into(), format!("{}:k", src.display())]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let t = text(&o.stdout).trim().to_string();
    let p = privy_for_anyone().display().to_string();
    let c = config_for_anyone();
    for verb in ["info", "rm"] {
        let o = as_nobody(&s(&[&p, "--config", &c, "ticket", verb, &t]), &st.socket);
        assert!(!o.status.success());
        assert!(
            text(&o.stderr).contains("belongs to another user"),
            "{verb}: {}",
            text(&o.stderr)
        );
    }
    // Claiming (what the hook does) straight through the API.
    let url = format!("http://privy/v1/tickets/{t}/claim");
    let o = as_nobody(
        &s(&[
            "curl",
            "-s",
            "-w",
            "\n%{http_code}",
            "--unix-socket",
            st.socket.to_str().unwrap(),
            "-X",
            "POST",
            "-d",
            r#"{"container_id":"x","bundle":"/tmp"}"#,
            &url,
        ]),
        &st.socket,
    );
    let body = text(&o.stdout);
    assert!(body.ends_with("403"), "{body}");
    assert!(!util::contains(&o.stdout, &secret));
    // The owner still has it; and nobody's own upload is nobody's.
    assert!(st.privy(&s(&["ticket", "info", &t])).status.success());
    let theirs = st.user_file("theirs", &util::secret("nobody"), 0o644);
    let o = as_nobody(
        &s(&[
            &p,
            "--config",
            &c,
            "upload",
            "-p",
            &format!("{}:n", theirs.display()),
            "--json",
        ]),
        &st.socket,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let created: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(created["owner"], 65534);
    // A file that uid cannot read is refused before anything is sent.
    let private = st.user_file("root-only", b"x", 0o600);
    let o = as_nobody(
        &s(&[
            &p,
            "--config",
            &c,
            "upload",
            "-p",
            &format!("{}:n", private.display()),
        ]),
        &st.socket,
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("Permission denied"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn privy_run_errors_are_one_line_and_exit_codes_pass_through() {
    let st = Setup::new("");
    let src = st.user_file("k", b"k", 0o600);
    let k = format!("{}:k", src.display());
    // No daemon yet.
    let o = st.privy(&s(&["run", "-p", &k, "--", "true"]));
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert!(
        e.contains("privy daemon is not running") && e.contains("privy daemon"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
    let mut d = st.daemon();
    for (args, want) in [
        (
            s(&["run", "-p", "/nonexistent/key:k", "--", "true"]),
            "/nonexistent/key",
        ),
        (
            s(&[
                "run",
                "-p",
                &format!("{}:../escape", src.display()),
                "--",
                "true",
            ]),
            "escape",
        ),
        (
            s(&[
                "run",
                "-p",
                &format!("{}:/abs", src.display()),
                "--",
                "true",
            ]),
            "/abs",
        ),
        (s(&["run", "-p", &k, "-p", &k, "--", "true"]), "given twice"),
        (
            s(&["run", "-p", st.shm.path().to_str().unwrap(), "--", "true"]),
            "not a regular file",
        ),
    ] {
        let o = st.privy(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let e = text(&o.stderr);
        assert!(e.contains(want), "{args:?}: {e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }
    // A command privy does not know gets the ticket in its environment,
    // and its exit code comes back.
    let o = st.privy(&s(&[
        "run",
        "-p",
        &k,
        "--",
        "sh",
        "-c",
        "test -n \"$PRIVY_TICKET\" && exit 7",
    ]));
    assert_eq!(o.status.code(), Some(7), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("PRIVY_TICKET"));
    // A signal that kills the command is passed on as such.
    let o = st.privy(&s(&["run", "-p", &k, "--", "sh", "-c", "kill -TERM $$"]));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(o.status.signal(), Some(15));
    // stdin as a source.
    let o = st.privy_stdin(&s(&["upload", "-p", "-:from-stdin", "--json"]), b"typed");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["files"][0]["path"], "from-stdin");
    assert_eq!(v["files"][0]["size"], 5);
    // SIGTERM: a clean exit that takes the socket with it.
    assert!(d.stop().success());
    assert!(!st.socket.exists(), "the daemon removes its socket");
}

#[test]
fn user_references_are_uploaded_and_private_flags_beat_them() {
    if !util::e2e_ready("runc") {
        return;
    }
    let st = Setup::new("");
    let _d = st.daemon();
    let referenced = util::secret("ref");
    let flag = util::secret("flag");
    let kept = util::secret("kept");
    let r1 = st.user_file("r1", &referenced, 0o600);
    let r2 = st.user_file("r2", &kept, 0o600);
    let f = st.user_file("f", &flag, 0o600);
    let cfg_dir = st.home().join(".config/privy");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    std::fs::write(
        cfg_dir.join("privy.toml"),
        format!(
            "[[private]]\nsrc = {:?}\ndest = \"tok\"\n[[private]]\nsrc = {:?}\ndest = \"kept\"\n[[private]]\nsrc = \"/nonexistent\"\ndest = \"gone\"\noptional = true\n",
            r1, r2
        ),
    )
    .unwrap();
    let b = Bundle::new("sha256sum /run/private/tok /run/private/kept; ls /run/private");
    let out = st.privy(&s(&[
        "run",
        "-p",
        &format!("{}:tok", f.display()),
        "--bundle",
        b.path().to_str().unwrap(),
        "--",
        "runc",
        "run",
        "-b",
        b.path().to_str().unwrap(),
        &b.id,
    ]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    assert!(o.contains(&sha256_hex(&flag)), "--private wins: {o}");
    assert!(!o.contains(&sha256_hex(&referenced)));
    assert!(
        o.contains(&sha256_hex(&kept)),
        "references are uploaded: {o}"
    );
    assert!(!o.contains("gone"));
    // A broken references file is a clear error, naming it.
    std::fs::write(cfg_dir.join("privy.toml"), "[[private]]\nsrc = 1\n").unwrap();
    let out = st.privy(&s(&["run", "--", "true"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(".config/privy/privy.toml"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_hundred_concurrent_runs_each_see_only_their_own_file() {
    if !util::e2e_ready("runc") {
        return;
    }
    const N: usize = 100;
    let st = Setup::new("");
    let _d = st.daemon();
    let mut jobs = Vec::new();
    for i in 0..N {
        let secret = util::secret(&format!("c{i}"));
        let src = st.user_file(&format!("k{i}"), &secret, 0o600);
        let b = Bundle::new("sha256sum /run/private/k; ls /run/private | wc -l");
        let child = Command::new("timeout")
            .arg("300")
            .arg(util::PRIVY)
            .args(["--config", st.w.config.to_str().unwrap(), "run", "-p"])
            .arg(format!("{}:k", src.display()))
            .arg("--bundle")
            .arg(b.path())
            .args(["--", "runc", "run", "-b"])
            .arg(b.path())
            .arg(&b.id)
            .env("HOME", st.home())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        jobs.push((secret, b, child));
    }
    let mut digests = std::collections::BTreeSet::new();
    for (secret, _b, child) in jobs {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let o = text(&out.stdout);
        let want = sha256_hex(&secret);
        assert!(
            o.contains(&want),
            "a container saw another's file (or none)"
        );
        assert!(o.trim_end().ends_with('1'), "exactly one file: {o}");
        digests.insert(want);
    }
    assert_eq!(digests.len(), N);
}

#[test]
fn shim_adds_the_hooks_then_runs_the_real_runtime() {
    if !util::e2e_ready("runc") {
        return;
    }
    let w = World::new("", "");
    let secret = util::secret("shim");
    w.put("entitlement.pem", &secret, 0o644);
    let b = Bundle::new("sha256sum /run/private/entitlement.pem > /out");
    let root = tempfile::tempdir().unwrap();
    let errlog = root.path().join("stderr");
    // As Docker calls a runtime: global flags first, then the verb.
    let shim = |args: &[&str]| {
        Command::new("timeout")
            .arg("60")
            .arg(util::PRIVY)
            .args([
                "--config",
                w.config.to_str().unwrap(),
                "shim",
                "--runtime-path",
                "runc",
                "--",
            ])
            .args([
                "--root",
                root.path().to_str().unwrap(),
                "--log-format",
                "json",
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Not a pipe: the container would inherit it and `create` would
            // wait for it to close.
            .stderr(Stdio::from(std::fs::File::create(&errlog).unwrap()))
            .status()
            .unwrap()
    };
    let o = shim(&["create", "--bundle", b.path().to_str().unwrap(), &b.id]);
    assert!(o.success(), "{}", std::fs::read_to_string(&errlog).unwrap());
    let cfg = std::fs::read_to_string(b.path().join("config.json")).unwrap();
    assert!(cfg.contains("create-runtime"), "hooks were added");
    assert!(shim(&["start", &b.id]).success());
    wait_until("container finished", 30, || {
        b.rootfs().join("out").exists() && {
            std::fs::read_to_string(b.rootfs().join("out")).is_ok_and(|s| s.contains('\n'))
        }
    });
    let _ = shim(&["delete", "-f", &b.id]);
    let out = std::fs::read_to_string(b.rootfs().join("out")).unwrap();
    assert!(out.contains(&sha256_hex(&secret)), "{out}");
    // Called as `privy-shim`, with the runtime from the environment.
    let link = root.path().join("privy-shim");
    std::os::unix::fs::symlink(util::PRIVY, &link).unwrap();
    let o = Command::new(&link)
        .arg("--version")
        .env("PRIVY_RUNTIME_PATH", "runc")
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(
        text(&o.stdout).contains("runc version"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn systemd_units_are_hardened_and_socket_activation_works() {
    let w = World::new("", "");
    let units = w.dir.path().join("units");
    let bin = util::privy_canonical();
    let o = w.privy(&[
        "install",
        "--systemd",
        "--unit-dir",
        units.to_str().unwrap(),
        "--binary",
        &bin,
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let service = std::fs::read_to_string(units.join("privy.service")).unwrap();
    for line in [
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "MemoryDenyWriteExecute=yes",
        "LimitCORE=0",
        "LimitMEMLOCK=infinity",
        "MemorySwapMax=0",
        &format!("ExecStart={bin} --config {} daemon", w.config.display()),
    ] {
        assert!(service.lines().any(|l| l == line), "missing {line}");
    }
    let socket = std::fs::read_to_string(units.join("privy.socket")).unwrap();
    assert!(socket.contains("ListenStream=/run/privy/privy.sock"));
    if let Some(analyze) = util::which("systemd-analyze") {
        let o = Command::new(analyze)
            .arg("verify")
            .arg(units.join("privy.socket"))
            .arg(units.join("privy.service"))
            .output()
            .unwrap();
        let e = text(&o.stderr);
        assert!(
            !e.contains("Unknown key") && !e.contains("Unknown lvalue"),
            "{e}"
        );
    }
    // Socket activation: the daemon serves the socket systemd hands it.
    let Some(activate) = util::which("systemd-socket-activate") else {
        eprintln!("SKIP: systemd-socket-activate is not installed; socket activation not tried");
        return;
    };
    let sock = w.dir.path().join("activated.sock");
    let mut child = Command::new(activate)
        .arg("-l")
        .arg(&sock)
        .args([
            util::PRIVY,
            "--config",
            w.config.to_str().unwrap(),
            "daemon",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("activation socket", 20, || sock.exists());
    let o = Command::new("curl")
        .args([
            "-s",
            "--unix-socket",
            sock.to_str().unwrap(),
            "http://privy/v1/health",
        ])
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        text(&o.stdout).contains("\"ok\":true"),
        "{}",
        text(&o.stdout)
    );
    // Uninstall removes both.
    assert!(w
        .privy(&[
            "install",
            "--systemd",
            "--unit-dir",
            units.to_str().unwrap(),
            "--uninstall"
        ])
        .status
        .success());
    assert!(!units.join("privy.service").exists() && !units.join("privy.socket").exists());
}

/// A dockerd of the test's own (own data root, exec root and socket, no
/// networking), with privy's shim as the runtime `privy`.
struct Dockerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Dockerd {
    fn start(w: &World) -> Dockerd {
        let dir = tempfile::Builder::new().prefix("pdk-").tempdir().unwrap();
        let conf = serde_json::json!({"runtimes": {"privy": {
            "path": util::privy_canonical(),
            "runtimeArgs": ["--config", w.config.to_str().unwrap(), "shim", "--runtime-path", util::which("runc").unwrap(), "--"],
        }}});
        std::fs::write(dir.path().join("daemon.json"), conf.to_string()).unwrap();
        let p = |n: &str| dir.path().join(n);
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(p("data"))
            .arg("--exec-root")
            .arg(p("x"))
            .arg("--pidfile")
            .arg(p("pid"))
            .arg("-H")
            .arg(format!("unix://{}", p("d.sock").display()))
            .arg("--config-file")
            .arg(p("daemon.json"))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--storage-driver=vfs",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(p("dockerd.log")).unwrap(),
            ))
            .spawn()
            .unwrap();
        let d = Dockerd { child, dir };
        wait_until("dockerd", 60, || d.docker(&["version"]).status.success());
        d
    }

    fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("d.sock").display())
    }

    fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(["-H", &self.host()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

#[test]
fn docker_through_the_shim_gets_host_files_and_uploads() {
    if !util::e2e_ready("runc") {
        return;
    }
    if util::which("dockerd").is_none() || util::which("docker").is_none() {
        assert!(
            std::env::var("PRIVY_E2E_REQUIRED").as_deref() != Ok("1"),
            "dockerd is not installed but PRIVY_E2E_REQUIRED=1"
        );
        eprintln!("SKIP: dockerd is not installed; Docker through privy shim not tried");
        return;
    }
    let st = Setup::new("");
    let _d = st.daemon();
    let host_secret = util::secret("docker-host");
    st.w.put("entitlement.pem", &host_secret, 0o644);
    let dk = Dockerd::start(&st.w);
    // The busybox image, imported into this dockerd.
    let root = tempfile::tempdir().unwrap();
    let tar = util::busybox_tar(root.path());
    let o = dk.docker(&["import", tar.to_str().unwrap(), "privy-bb:test"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // Host files, with no hooks dir: the shim adds the hooks.
    let o = dk.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--runtime",
        "privy",
        "privy-bb:test",
        "sha256sum",
        "/run/private/entitlement.pem",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains(&sha256_hex(&host_secret)));
    // A per-run upload through privy run, and the same engine.
    let up = util::secret("docker-upload");
    let src = st.user_file("k", &up, 0o600);
    let host = dk.host();
    let out = st.privy(&s(&[
        "run",
        "-p",
        &format!("{}:k", src.display()),
        "--",
        "docker",
        "-H",
        &host,
        "run",
        "--rm",
        "--network",
        "none",
        "--runtime",
        "privy",
        "privy-bb:test",
        "sha256sum",
        "/run/private/k",
    ]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&sha256_hex(&up)));
    // Without privy's runtime, nothing is injected (and nothing breaks).
    let o = dk.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "privy-bb:test",
        "ls",
        "/run",
    ]);
    assert!(!text(&o.stdout).contains("private"));
}
