//! Rotation (issue 15): the refresh mechanism against the real kernel. A
//! "container" here is a process in a mount namespace of its own with a
//! tmpfs only it sees (`unshare -m`); privy's hook code mounts its sealed
//! tmpfs there (`inject_into`), then the refresh child (the real `privy
//! refresh-apply`, fed over a pipe) applies new sets. What the container
//! sees is read through `/proc/PID/root`, which walks its namespace.
//!
//! [`scheduled`]: the node agent's scheduler with real runc and podman
//! containers started through privy's hook, OpenBao and host-dir sources.

mod scheduled;

use crate::util;
use privy::check::CheckedFile;
use privy::pipeline::refresh::{apply_via_child, Changes, RefreshError, Target};
use privy::secret::{RelPath, Secret};
use privy::sys::unix_now as now;
use std::io::{BufRead, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A process in its own mount namespace, with `dir` (empty on the host)
/// a tmpfs of its own, and privy's files at `dir/private`.
struct Ns {
    child: Child,
    dir: tempfile::TempDir,
    pid: i32,
}

impl Ns {
    fn start() -> Ns {
        let dir = tempfile::Builder::new()
            .prefix("privy-rot-")
            .tempdir_in("/tmp")
            .unwrap();
        let script = format!(
            "mount -t tmpfs -o size=4m tmpfs {d} && echo ready && exec sleep 600",
            d = dir.path().display()
        );
        let mut child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        let pid = child.id() as i32;
        Ns { child, dir, pid }
    }

    fn target(&self) -> String {
        format!("{}/private", self.dir.path().display())
    }

    /// The path of `rel` below the target, as the container sees it.
    fn seen(&self, rel: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{}/{rel}", self.pid, self.target()))
    }

    fn at(&self) -> Target {
        Target {
            pid: self.pid,
            start_time: privy::sys::process::start_time(self.pid).unwrap(),
            target: self.target(),
            owner: (0, 0),
        }
    }

    fn inject(&self, files: &[CheckedFile]) {
        privy::materialize::inject_into(
            self.pid,
            Path::new("/"),
            &self.target(),
            files,
            (0, 0),
            None,
        )
        .unwrap();
    }

    fn refresh(&self, files: &[CheckedFile]) -> Result<Changes, RefreshError> {
        apply_via_child(Path::new(env!("CARGO_BIN_EXE_privy")), &self.at(), files)
    }

    /// The target's line in the container's mount table.
    fn mount_line(&self) -> String {
        let t = std::fs::read_to_string(format!("/proc/{}/mountinfo", self.pid)).unwrap();
        t.lines()
            .find(|l| l.split(' ').nth(4) == Some(self.target().as_str()))
            .expect("the target is mounted in the container")
            .to_owned()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn file(path: &str, data: &[u8], mode: u32) -> CheckedFile {
    CheckedFile {
        path: RelPath::new(path).unwrap(),
        data: Secret::new(data.to_vec()),
        mode,
        source: "test".into(),
    }
}

fn ready() -> bool {
    if !util::is_root() || util::which("unshare").is_none() {
        eprintln!("SKIP rotation: needs root and unshare");
        assert!(
            std::env::var_os("PRIVY_E2E_REQUIRED").is_none(),
            "PRIVY_E2E_REQUIRED: rotation tests skipped"
        );
        return false;
    }
    true
}

/// A runc container started detached through privy's hooks installed in
/// its bundle ([`util::Bundle::run_detached`]), with the bundle it runs
/// from; deleted (poststop runs) when dropped, before its bundle goes.
pub struct Runc {
    running: util::Running,
    /// Kept until the container is deleted.
    _bundle: util::Bundle,
    pub pid: i32,
}

impl Runc {
    pub fn start(w: &util::World, bundle: util::Bundle) -> Runc {
        bundle.install(w);
        let running = bundle.run_detached("runc");
        let pid = running.pid;
        Runc {
            running,
            _bundle: bundle,
            pid,
        }
    }

    pub fn id(&self) -> &str {
        &self.running.id
    }

    /// `rel` below `/run/private`, as the container sees it.
    pub fn seen(&self, rel: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root/run/private/{rel}", self.pid))
    }
}

fn host_mounts() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count()
}

#[test]
fn refresh_replaces_changed_adds_new_removes_gone_and_leaves_unchanged_inodes() {
    if !ready() {
        return;
    }
    let ns = Ns::start();
    let (a1, keep, old) = (
        util::secret("rot-a1"),
        util::secret("rot-keep"),
        util::secret("rot-old"),
    );
    ns.inject(&[
        file("a", &a1, 0o400),
        file("keep", &keep, 0o440),
        file("old/x", &old, 0o400),
        file("d/stay", &keep, 0o400),
        file("d/go", &old, 0o400),
    ]);
    let keep_ino = std::fs::metadata(ns.seen("keep")).unwrap().ino();
    let a_ino = std::fs::metadata(ns.seen("a")).unwrap().ino();
    let before_line = ns.mount_line();
    let host_before = host_mounts();
    // A process holding the old file keeps its bytes.
    let mut held = std::fs::File::open(ns.seen("a")).unwrap();

    let (a2, new) = (util::secret("rot-a2-longer"), util::secret("rot-new"));
    let changes = ns
        .refresh(&[
            file("a", &a2, 0o400),
            file("keep", &keep, 0o440),
            file("d/stay", &keep, 0o400),
            file("n/e/w", &new, 0o400),
            file("d/added", &new, 0o444),
        ])
        .unwrap();
    assert_eq!(changes.changed, ["a"]);
    assert_eq!(changes.added, ["d/added", "n/e/w"]);
    assert_eq!(changes.removed, ["d/go", "old"]);
    assert_eq!(changes.unchanged, 2);

    assert_eq!(std::fs::read(ns.seen("a")).unwrap(), a2);
    assert_eq!(std::fs::read(ns.seen("n/e/w")).unwrap(), new);
    let m = std::fs::metadata(ns.seen("d/added")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o444, 0, 0));
    assert_eq!(
        std::fs::metadata(ns.seen("n/e")).unwrap().mode() & 0o7777,
        0o700
    );
    assert!(!ns.seen("old").exists() && !ns.seen("d/go").exists());
    assert_eq!(std::fs::metadata(ns.seen("keep")).unwrap().ino(), keep_ino);
    assert_ne!(std::fs::metadata(ns.seen("a")).unwrap().ino(), a_ino);
    let mut got = Vec::new();
    held.read_to_end(&mut got).unwrap();
    assert_eq!(got, a1, "a holder of the old file keeps the old bytes");
    // No temporary name left behind.
    let names: Vec<String> = std::fs::read_dir(ns.seen(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.starts_with('.')), "{names:?}");

    // The container's mount is the same, still ro,nosuid,nodev,noexec,
    // and it still cannot write there; nothing was mounted on the host.
    let line = ns.mount_line();
    assert_eq!(line, before_line);
    let opts = line.split(' ').nth(5).unwrap();
    for o in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(opts.split(',').any(|x| x == o), "{line}");
    }
    let e = std::fs::write(ns.seen("a"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    assert_eq!(host_mounts(), host_before);
    assert!(!std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(&ns.target()));
    // Nothing on disk: the directory under /tmp (on disk here) is empty on
    // the host (the tmpfs over it is the container's own) and no file
    // there holds a byte of any version.
    assert_eq!(std::fs::read_dir(ns.dir.path()).unwrap().count(), 0);
    for s in [&a1, &a2, &new] {
        assert!(util::search_disk(&[ns.dir.path().to_owned()], s).is_empty());
    }

    // Again with the same set: nothing touched.
    let again = ns
        .refresh(&[
            file("a", &a2, 0o400),
            file("keep", &keep, 0o440),
            file("d/stay", &keep, 0o400),
            file("n/e/w", &new, 0o400),
            file("d/added", &new, 0o444),
        ])
        .unwrap();
    assert!(again.is_empty() && again.unchanged == 5, "{again:?}");
}

#[test]
fn a_stopped_or_reused_pid_is_never_entered() {
    if !ready() {
        return;
    }
    let mut ns = Ns::start();
    ns.inject(&[file("a", b"v1", 0o400)]);
    let mut at = ns.at();
    at.start_time += 1;
    let exe = Path::new(env!("CARGO_BIN_EXE_privy"));
    let e = apply_via_child(exe, &at, &[file("a", b"v2", 0o400)]).unwrap_err();
    assert!(
        e.to_string()
            .contains("is gone or is no longer the container's process"),
        "{e}"
    );
    assert_eq!(std::fs::read(ns.seen("a")).unwrap(), b"v1");
    let at = ns.at();
    ns.child.kill().unwrap();
    ns.child.wait().unwrap();
    let e = apply_via_child(exe, &at, &[file("a", b"v2", 0o400)]).unwrap_err();
    assert!(e.to_string().contains("is gone"), "{e}");
}

#[test]
fn privys_own_namespace_and_a_target_that_is_not_its_tmpfs_are_refused() {
    if !ready() {
        return;
    }
    let exe = Path::new(env!("CARGO_BIN_EXE_privy"));
    // The test's own pid: the host's namespace.
    let me = std::process::id() as i32;
    let at = Target {
        pid: me,
        start_time: privy::sys::process::start_time(me).unwrap(),
        target: "/tmp".into(),
        owner: (0, 0),
    };
    let e = apply_via_child(exe, &at, &[file("a", b"v2", 0o400)]).unwrap_err();
    assert!(e.to_string().contains("privy's own mount namespace"), "{e}");
    // A container whose target is its plain (writable) tmpfs, not privy's.
    let ns = Ns::start();
    let mut at = ns.at();
    at.target = ns.dir.path().display().to_string();
    let e = apply_via_child(exe, &at, &[file("a", b"v2", 0o400)]).unwrap_err();
    assert!(e.to_string().contains("is not privy's sealed tmpfs"), "{e}");
    assert!(!ns.seen("../a").exists());
}

#[test]
fn a_reader_never_sees_a_partial_or_empty_file_over_100_refreshes_and_inotify_sees_moves() {
    if !ready() {
        return;
    }
    let ns = Ns::start();
    let v1 = vec![b'1'; 100_000];
    let v2 = vec![b'2'; 3_000];
    ns.inject(&[file("f", &v1, 0o400)]);
    // inotify on the container's directory (through /proc/PID/root).
    // SAFETY: plain syscalls on a descriptor we own.
    let ifd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    assert!(ifd >= 0);
    let dir = std::ffi::CString::new(ns.seen("").to_string_lossy().as_bytes()).unwrap();
    // SAFETY: valid fd and C string.
    assert!(unsafe { libc::inotify_add_watch(ifd, dir.as_ptr(), libc::IN_MOVED_TO) } >= 0);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let path = ns.seen("f");
    let reader = {
        let stop = stop.clone();
        let (v1, v2) = (v1.clone(), v2.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let got = std::fs::read(&path).unwrap();
                assert!(
                    got == v1 || got == v2,
                    "a partial or empty read: {} bytes",
                    got.len()
                );
                reads += 1;
            }
            reads
        })
    };
    for i in 0..100 {
        let v = if i % 2 == 0 { &v2 } else { &v1 };
        let c = ns.refresh(&[file("f", v, 0o400)]).unwrap();
        assert_eq!(c.changed, ["f"]);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.join().unwrap();
    assert!(reads > 100, "the reader read only {reads} times");
    let mut buf = [0u8; 4096];
    // SAFETY: valid fd and buffer.
    let n = unsafe { libc::read(ifd, buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: our descriptor.
    unsafe { libc::close(ifd) };
    assert!(n > 0, "inotify saw no IN_MOVED_TO");
    let ev_name = &buf[16..n as usize];
    assert!(util::contains(ev_name, b"f\0"), "the event names the file");
}

#[test]
fn a_set_bigger_than_the_tmpfs_grows_it_and_a_pinned_old_set_beyond_the_cap_fails_closed() {
    if !ready() {
        return;
    }
    let ns = Ns::start();
    ns.inject(&[file("f", &[b'a'; 10_000], 0o400)]);
    // Ten times the room the tmpfs was made with: grown, written.
    let big = vec![b'b'; 1_000_000];
    let c = ns.refresh(&[file("f", &big, 0o400)]).unwrap();
    assert_eq!(c.changed, ["f"]);
    assert_eq!(std::fs::read(ns.seen("f")).unwrap().len(), big.len());
    // Hold every old version open: the old pages stay, so room runs out at
    // the cap (twice the new set) and the refresh changes nothing.
    let mut held = vec![std::fs::File::open(ns.seen("f")).unwrap()];
    let mut failed = None;
    for i in 0..6u8 {
        let v = vec![b'c' + i; 1_000_000];
        match ns.refresh(&[file("f", &v, 0o400)]) {
            Ok(_) => held.push(std::fs::File::open(ns.seen("f")).unwrap()),
            Err(e) => {
                failed = Some((e, i));
                break;
            }
        }
    }
    let (e, i) = failed.expect("pinned versions must run out of room");
    assert!(
        e.to_string().contains("more than the tmpfs can hold"),
        "{e}"
    );
    let last = if i == 0 { b'b' } else { b'c' + i - 1 };
    assert!(std::fs::read(ns.seen("f"))
        .unwrap()
        .iter()
        .all(|b| *b == last));
}

/// `privy refresh` against a real runc container started through privy's
/// hook with the `host-dir` source: a changed file, an added and a removed
/// one reach the running container; the
/// audit event has names and fingerprints, no value; a stopped container
/// is not entered.
#[test]
fn privy_refresh_updates_a_running_runc_container_and_never_enters_a_stopped_one() {
    if !util::e2e_ready("runc") {
        return;
    }
    let w = util::World::new("", "");
    let (v1, v2, extra) = (
        util::secret("rr-v1"),
        util::secret("rr-v2"),
        util::secret("rr-extra"),
    );
    w.put("api.key", &v1, 0o400);
    w.put("gone/old", &extra, 0o400);
    let b = util::Bundle::new("while true; do sleep 1; done");
    b.install(&w);
    let running = b.run_detached("runc");
    let pid = running.pid;
    let seen = |rel: &str| PathBuf::from(format!("/proc/{pid}/root/run/private/{rel}"));
    assert_eq!(std::fs::read(seen("api.key")).unwrap(), v1);

    // Version 2, one file added, one gone: `privy refresh ID`.
    w.put("api.key", &v2, 0o400);
    w.put("added", &extra, 0o400);
    std::fs::remove_dir_all(w.private_d.join("gone")).unwrap();
    let out = w.privy(&["refresh", &b.id]);
    assert!(out.status.success(), "refresh: {}", util::text(&out.stderr));
    assert_eq!(
        util::text(&out.stdout).trim(),
        format!("{}: 1 changed, 1 added, 1 removed, 0 unchanged", b.id)
    );
    assert_eq!(std::fs::read(seen("api.key")).unwrap(), v2);
    assert_eq!(std::fs::read(seen("added")).unwrap(), extra);
    assert!(!seen("gone").exists());
    let line = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap()
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/run/private"))
        .unwrap()
        .to_owned();
    for o in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(
            line.split(' ').nth(5).unwrap().split(',').any(|x| x == o),
            "{line}"
        );
    }
    let log = util::text(&w.log());
    assert!(
        log.contains("refreshed") && log.contains("hmac-sha256:"),
        "{log}"
    );

    // No value in any output, log or privy's files.
    util::assert_no_trace(&w, &b, &[&out], &[&v1, &v2, &extra]);

    // Stopped: never entered, one line.
    let _ = Command::new("runc").args(["kill", &b.id, "KILL"]).output();
    for _ in 0..50 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = w.privy(&["refresh", &b.id]);
    assert!(!out.status.success());
    assert!(
        util::text(&out.stderr).contains("is gone"),
        "{}",
        util::text(&out.stderr)
    );
}

/// Issue 15's expiry end to end on runc: a source that says when its
/// files expire (the hostile fixture's `expires` mode, from a pinned file)
/// gets that time into the hook's served record, which a refresh schedule
/// reads, whether the hook ran the pipeline itself or the agent served it
/// (the answer carries it); `privy refresh` records what the source says
/// then, and no expiry once it says none. The audit events show it.
#[test]
fn the_expiry_a_source_gives_reaches_the_served_record_and_a_refresh_renews_it() {
    if !util::e2e_ready("runc") {
        return;
    }
    let st = crate::uploads::Setup::new("");
    let wasm = st.w.dir.path().join("expiring.wasm");
    std::fs::copy(util::guest("hostile"), &wasm).unwrap();
    let pin = util::sha256_file(&wasm);
    st.w.append_config(&format!(
        "[[source]]\nname = \"expiring\"\nplugin = {wasm:?}\nsha256 = {pin:?}\n\
         config = {{ mode = \"expires\", count = \"1\", expires_in = \"3600\" }}\n"
    ));
    let says = |what: &str| {
        let text = std::fs::read_to_string(&st.w.config).unwrap();
        let (head, _) = text.split_once("expires_in = ").unwrap();
        std::fs::write(&st.w.config, format!("{head}expires_in = \"{what}\" }}\n")).unwrap();
    };
    let cfg = privy::config::Config::load(&st.w.config, true).unwrap();
    let recorded = |id: &str| {
        privy::hook::served(&cfg, id)
            .unwrap()
            .expect("the hook keeps a record of a served container")
            .expires
    };
    let in_range = |e: Option<u64>, from: u64, secs: u64| {
        let e = e.expect("an expiry");
        assert!(
            (from + secs..=now() + secs).contains(&e),
            "{e} is not {secs} s after {from}"
        );
    };

    // The hook runs the pipeline itself (no agent).
    let b = util::Bundle::new("while true; do sleep 1; done");
    b.install(&st.w);
    let t0 = now();
    let c = b.run_detached("runc");
    assert!(
        std::fs::metadata(format!("/proc/{}/root/run/private/f0", c.pid)).is_ok(),
        "the source's file is in the container"
    );
    in_range(recorded(&b.id), t0, 3600);
    let log = util::text(&st.w.log());
    assert!(log.contains("\"expires\":"), "the injected event: {log}");

    // A refresh records what the source says now.
    says("7200");
    let t1 = now();
    let out = st.w.privy(&["refresh", &b.id]);
    assert!(out.status.success(), "refresh: {}", util::text(&out.stderr));
    in_range(recorded(&b.id), t1, 7200);
    // It says nothing any more: no expiry.
    says("");
    let out = st.w.privy(&["refresh", &b.id]);
    assert!(out.status.success(), "refresh: {}", util::text(&out.stderr));
    assert_eq!(recorded(&b.id), None);
    drop(c);

    // Served by the agent: the answer carries the expiry to the thin hook.
    says("600");
    let _d = st.daemon();
    let b = util::Bundle::new("while true; do sleep 1; done");
    b.install(&st.w);
    let t2 = now();
    let _c = b.run_detached("runc");
    let daemon_log =
        util::text(&std::fs::read(st.w.dir.path().join("daemon.log")).unwrap_or_default());
    assert!(
        daemon_log.contains("agent: served a hook") && daemon_log.contains(&b.id),
        "the agent must have served this container: {daemon_log}"
    );
    in_range(recorded(&b.id), t2, 600);
}
