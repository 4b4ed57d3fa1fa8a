//! The node agent refreshes running containers on its own (issue 15): a
//! real `privy daemon` serves real runc and podman containers through
//! privy's hook, then gives them new versions on each source's `refresh`
//! interval, on SIGHUP, and never takes their files away when a source
//! fails.

use super::Runc;
use crate::bao::{bao_ready, Bao};
use crate::uploads::{wait_until, Setup};
use crate::util::{self, text, Bundle};
use crate::vault::Src;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn daemon_log(st: &Setup) -> String {
    text(&std::fs::read(st.w.dir.path().join("daemon.log")).unwrap_or_default())
}

/// What the container sees at `path`, or nothing.
fn read(path: &PathBuf) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}

/// A rootful podman container (`podman run -d`, privy's hooks.d), removed
/// when dropped.
struct Podman {
    id: String,
    pid: i32,
}

impl Podman {
    fn start(st: &Setup, extra: &[&str]) -> Podman {
        let mut args = st.podman("crun", &["run", "-d", "--network", "none"]);
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend([util::busybox_image().into(), "sleep".into(), "600".into()]);
        let out = Command::new("timeout")
            .arg("120")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "podman run: {}", text(&out.stderr));
        let id = text(&out.stdout).trim().to_string();
        let out = Command::new("podman")
            .args(["inspect", "--format", "{{.State.Pid}}", &id])
            .output()
            .unwrap();
        let pid = text(&out.stdout)
            .trim()
            .parse()
            .expect("podman gives its pid");
        Podman { id, pid }
    }

    fn seen(&self, rel: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root/run/private/{rel}", self.pid))
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "-f", "-t", "0", &self.id])
            .output();
    }
}

fn vault_runc(st: &Setup, path: &str) -> Runc {
    let b = Bundle::new("while true; do sleep 1; done");
    b.edit(|v| v["annotations"] = serde_json::json!({ "io.privy.vault": path }));
    Runc::start(&st.w, b)
}

/// A vault source for `b` on `ci/*` with `refresh`, for containers
/// annotated `io.privy.vault`.
fn vault_source(b: &Bao, refresh: &str) -> String {
    Src::new(b, "ci/*").toml_when(
        true,
        &format!("when = {{ annotation = \"io.privy.vault\" }}\nrefresh = {refresh:?}\n"),
    )
}

#[test]
fn openbao_v2_reaches_running_runc_and_podman_containers_on_the_interval_and_privy_refresh_is_immediate(
) {
    if !util::e2e_ready("runc") || !util::e2e_ready("podman") || !bao_ready() {
        return;
    }
    let b = Bao::start();
    let (v1, v2, v3, v4) = (
        util::secret("bao-v1"),
        util::secret("bao-v2"),
        util::secret("bao-v3"),
        util::secret("bao-v4"),
    );
    b.put("secret", "ci/rot", &[("api.key", &v1)]);
    let st = Setup::new("");
    st.w.append_config(&vault_source(&b, "2s"));
    st.install_hooks();
    let _d = st.daemon();
    let r = vault_runc(&st, "ci/rot");
    let p = Podman::start(&st, &["--annotation", "io.privy.vault=ci/rot"]);
    let key = "ci/rot/api.key";
    assert_eq!(read(&r.seen(key)), Some(v1.clone()));
    assert_eq!(read(&p.seen(key)), Some(v1.clone()));
    let (rpid, ppid) = (r.pid, p.pid);

    // Version 2: both see it within a few intervals, without a restart.
    b.put("secret", "ci/rot", &[("api.key", &v2)]);
    let t = Instant::now();
    wait_until("both containers see v2", 15, || {
        read(&r.seen(key)) == Some(v2.clone()) && read(&p.seen(key)) == Some(v2.clone())
    });
    eprintln!("v2 reached both containers in {:?}", t.elapsed());
    for pid in [rpid, ppid] {
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "restarted"
        );
    }
    let log = daemon_log(&st);
    assert!(
        log.contains("agent: refreshed") && log.contains(r.id()) && log.contains(&p.id),
        "{log}"
    );
    assert!(
        log.contains("privy::audit: refreshed"),
        "the audit event: {log}"
    );

    // A long interval: `privy refresh ID` makes it immediate, for both.
    let cfg = std::fs::read_to_string(&st.w.config).unwrap();
    std::fs::write(
        &st.w.config,
        cfg.replace("refresh = \"2s\"", "refresh = \"1h\""),
    )
    .unwrap();
    // The agent reloads within a second and plans every container again.
    std::thread::sleep(Duration::from_millis(2_500));
    b.put("secret", "ci/rot", &[("api.key", &v3)]);
    let out = st.privy(&["refresh".into(), r.id().into(), p.id.clone()]);
    assert!(out.status.success(), "refresh: {}", text(&out.stderr));
    assert_eq!(read(&r.seen(key)), Some(v3.clone()));
    assert_eq!(read(&p.seen(key)), Some(v3.clone()));
    // ... and the agent's timer is now an hour: v4 does not arrive on its own.
    b.put("secret", "ci/rot", &[("api.key", &v4)]);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(read(&r.seen(key)), Some(v3.clone()));
    assert_eq!(read(&p.seen(key)), Some(v3.clone()));

    let all = [daemon_log(&st), text(&st.w.log()), text(&out.stdout)].concat();
    for v in [&v1, &v2, &v3, &v4] {
        assert!(!util::contains(all.as_bytes(), v), "a value in a log");
    }
    assert!(!all.contains(&b.token), "the token in a log");
}

#[test]
fn openbao_stopped_during_refreshes_keeps_v1_and_the_agent_logs_the_source_and_the_cause() {
    if !util::e2e_ready("runc") || !bao_ready() {
        return;
    }
    let mut b = Bao::start();
    let v1 = util::secret("bao-down-v1");
    b.put("secret", "ci/down", &[("api.key", &v1)]);
    let st = Setup::new("[limits]\nplugin_timeout_ms = 3000\n");
    st.w.append_config(&vault_source(&b, "2s"));
    let _d = st.daemon();
    let r = vault_runc(&st, "ci/down");
    let key = "ci/down/api.key";
    assert_eq!(read(&r.seen(key)), Some(v1.clone()));
    b.stop();
    let failed = "agent: refresh failed";
    wait_until("the agent says a refresh failed", 15, || {
        daemon_log(&st).contains(failed)
    });
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let log = daemon_log(&st);
    let line = log
        .lines()
        .find(|l| l.contains(failed))
        .unwrap()
        .replace("\\\"", "\"");
    assert!(
        line.contains(r.id())
            && line.contains("source \"vault\": unavailable")
            && line.contains(&b.host())
            && line.contains("its files are unchanged"),
        "{line}"
    );
    // One line per failed attempt, one attempt per interval: no tight retry.
    let n = log.lines().filter(|l| l.contains(failed)).count();
    let most = 2 + (t.elapsed().as_secs() / 2) as usize + 1;
    assert!((2..=most).contains(&n), "{n} failure lines in ~5 s: {log}");
    assert!(
        log.contains("privy::audit: refresh-failed"),
        "the audit event: {log}"
    );
    // The container keeps version 1.
    assert_eq!(read(&r.seen(key)), Some(v1.clone()));
    let all = [log, text(&st.w.log())].concat();
    assert!(!util::contains(all.as_bytes(), &v1), "a value in a log");
    assert!(!all.contains(&b.token), "the token in a log");
}

#[test]
fn host_dir_files_added_and_removed_reach_a_running_container_on_the_interval_and_one_refresh_runs_at_a_time(
) {
    if !util::e2e_ready("runc") {
        return;
    }
    let st = Setup::with_keys("", "", "refresh = \"2s\"\n");
    let (keep, gone, added) = (
        util::secret("hd-keep"),
        util::secret("hd-gone"),
        util::secret("hd-added"),
    );
    st.w.put("keep.key", &keep, 0o400);
    st.w.put("old/gone.key", &gone, 0o400);
    let _d = st.daemon();
    let r = Runc::start(&st.w, Bundle::new("while true; do sleep 1; done"));
    assert_eq!(read(&r.seen("old/gone.key")), Some(gone.clone()));
    let keep_ino =
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(r.seen("keep.key")).unwrap());

    std::fs::remove_dir_all(st.w.private_d.join("old")).unwrap();
    st.w.put("new/added.key", &added, 0o400);
    wait_until("added appears and gone disappears", 15, || {
        read(&r.seen("new/added.key")) == Some(added.clone()) && !r.seen("old").exists()
    });
    // Unchanged: the same inode, never rewritten.
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(r.seen("keep.key")).unwrap()),
        keep_ino
    );

    // One refresh at a time: while someone holds the container's refresh
    // lock, `privy refresh` waits and the agent skips it.
    let lock_path =
        st.w.dir
            .path()
            .join("state")
            .join(format!("{}.lock", r.id()));
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .unwrap();
    // SAFETY: flock on our own descriptor.
    assert_eq!(
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) },
        0
    );
    st.w.put("keep.key", &added, 0o400);
    let mut cli = Command::new(util::PRIVY)
        .args(["--config", st.w.config.to_str().unwrap(), "refresh", r.id()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        cli.try_wait().unwrap().is_none(),
        "privy refresh did not wait"
    );
    assert_eq!(
        read(&r.seen("keep.key")),
        Some(keep.clone()),
        "the agent did not skip"
    );
    drop(lock);
    let out = cli.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(read(&r.seen("keep.key")), Some(added.clone()));

    // Stopped, its record still there (no poststop yet): never entered,
    // forgotten without a line, however many slots pass.
    let id = r.id().to_string();
    let _ = Command::new("runc").args(["kill", &id, "KILL"]).output();
    wait_until("the container's init is gone", 10, || {
        !std::path::Path::new(&format!("/proc/{}", r.pid)).exists()
    });
    std::thread::sleep(Duration::from_secs(5));
    let state = st.w.dir.path().join("state");
    assert!(
        state.join(format!("{id}.json")).exists(),
        "poststop ran early"
    );
    let dl = daemon_log(&st);
    assert!(
        !dl.lines()
            .any(|l| l.contains(&id) && (l.contains("WARN") || l.contains("ERROR"))),
        "{dl}"
    );
    // Deleted: poststop removes the record and its lock file.
    drop(r);
    assert!(!state.join(format!("{id}.json")).exists());
    assert!(!lock_path.exists(), "the lock file outlived the container");
    let log = [daemon_log(&st), text(&st.w.log())].concat();
    for v in [&keep, &gone, &added] {
        assert!(!util::contains(log.as_bytes(), v), "a value in a log");
    }
}

#[test]
fn sighup_makes_the_agent_refresh_every_served_container_now() {
    if !util::e2e_ready("runc") {
        return;
    }
    // No `refresh`: only a SIGHUP (or `privy refresh`) gives new files.
    let st = Setup::new("");
    let (v1, v2) = (util::secret("hup-v1"), util::secret("hup-v2"));
    st.w.put("a.key", &v1, 0o400);
    let d = st.daemon();
    let cs: Vec<Runc> = (0..2)
        .map(|_| Runc::start(&st.w, Bundle::new("while true; do sleep 1; done")))
        .collect();
    for c in &cs {
        assert_eq!(read(&c.seen("a.key")), Some(v1.clone()));
    }
    st.w.put("a.key", &v2, 0o400);
    std::thread::sleep(Duration::from_secs(3));
    for c in &cs {
        assert_eq!(
            read(&c.seen("a.key")),
            Some(v1.clone()),
            "refreshed without a SIGHUP"
        );
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait_until("every container sees v2 after SIGHUP", 10, || {
        cs.iter()
            .all(|c| read(&c.seen("a.key")) == Some(v2.clone()))
    });
    let log = daemon_log(&st);
    assert!(
        log.contains("SIGHUP: refreshing every served container"),
        "{log}"
    );
}

/// No `refresh`, but a source that says its files expire in 10 s: the
/// agent refreshes before then (10% of the time left, here 1 s, early), and
/// the refresh records the expiry the source gives then, so the next one
/// follows it.
#[test]
fn the_agent_refreshes_before_the_expiry_a_source_gives() {
    if !util::e2e_ready("runc") {
        return;
    }
    let st = Setup::new("");
    let wasm = st.w.dir.path().join("expiring.wasm");
    std::fs::copy(util::guest("hostile"), &wasm).unwrap();
    let pin = util::sha256_file(&wasm);
    st.w.append_config(&format!(
        "[[source]]\nname = \"expiring\"\nplugin = {wasm:?}\nsha256 = {pin:?}\n\
         config = {{ mode = \"expires\", count = \"1\", expires_in = \"10\" }}\n"
    ));
    let cfg = privy::config::Config::load(&st.w.config, true).unwrap();
    let recorded = |id: &str| {
        privy::hook::served(&cfg, id)
            .unwrap()
            .expect("a record")
            .expires
            .expect("an expiry")
    };
    let _d = st.daemon();
    let r = Runc::start(&st.w, Bundle::new("while true; do sleep 1; done"));
    let first = recorded(r.id());
    let t = Instant::now();
    wait_until("the agent refreshed before the expiry", 20, || {
        recorded(r.id()) > first
    });
    // Before the expiry (10 s after it was recorded), not at once.
    let took = t.elapsed();
    assert!(
        (Duration::from_secs(5)..Duration::from_secs(11)).contains(&took),
        "refreshed {took:?} after the start"
    );
    // ... and again before the new one.
    let second = recorded(r.id());
    wait_until("the agent refreshed before the next expiry", 20, || {
        recorded(r.id()) > second
    });
}
