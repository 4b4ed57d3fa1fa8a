//! Regression tests for the hook and materialize defects of issue 10 (B1,
//! B7, B8, B9, B12, B16, B17, B18 and the unclear messages), named for the
//! defect each guards against. The container tests run on real runc and
//! real crun, as root; each asserts what must not happen too: no mount in
//! the host's namespace, no byte on the host, nothing left in the rootfs.

use crate::uploads::Setup;
use crate::util::{self, text, Bundle, World};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

on_both_runtimes!(
    b1_tmpfs_never_reaches_the_host_through_a_shared_bind_at_run,
    b1_tmpfs_never_reaches_the_host_through_a_run_symlink_to_a_shared_volume,
    b1_a_shared_mount_confined_to_the_container_still_gets_its_files,
    b7_no_directory_is_created_on_a_host_volume_behind_a_run_symlink,
    b9_image_symlinks_onto_the_root_or_system_dirs_stop_the_container,
    b12_paths_too_deep_fail_fast_and_leave_nothing_in_the_rootfs,
    b18_the_container_gets_only_the_names_it_asked_for,
    invalid_user_id_is_named_before_mounting,
    dangling_run_symlink_is_named_in_one_line,
);

/// Host mount table lines whose mount point is under one of `paths`.
fn host_mounts_under(paths: &[&Path]) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    table
        .lines()
        .filter(|l| {
            let mp = l.split(' ').nth(4).unwrap_or("");
            paths.iter().any(|p| Path::new(mp).starts_with(p))
        })
        .map(|l| {
            // Drop the mount and parent ids: a remount elsewhere would
            // change them without changing what is mounted where.
            l.split(' ').skip(2).collect::<Vec<_>>().join(" ")
        })
        .collect()
}

/// A host directory bind-mounted on itself and made `shared`, as on a
/// systemd host, so that a peer of it inside a container propagates mounts
/// back here. Unmounted (lazily, with anything below it) on drop.
struct SharedDir {
    dir: tempfile::TempDir,
}

impl SharedDir {
    fn new() -> SharedDir {
        use nix::mount::{mount, MsFlags};
        let dir = tempfile::Builder::new()
            .prefix("privy-shared-")
            .tempdir()
            .unwrap();
        mount(
            Some(dir.path()),
            dir.path(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        mount(
            None::<&str>,
            dir.path(),
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .unwrap();
        SharedDir { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.dir.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// `RUNTIME create`, the host's mount table while the container exists,
/// then `RUNTIME delete -f`. Returns whether create succeeded, its stderr,
/// and the table lines under `watch` during.
fn create_and_delete(rt: &str, b: &Bundle, watch: &[&Path]) -> (bool, String, Vec<String>) {
    let errfile = b.path().join("create.err");
    // No pipes: the container's init inherits create's stdio.
    let st = Command::new("timeout")
        .args(["60", rt, "create", "-b"])
        .arg(b.path())
        .arg(&b.id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // Append: crun and privy's relayed line both write to it.
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&errfile)
                .unwrap(),
        )
        .status()
        .unwrap();
    let during = host_mounts_under(watch);
    let _ = Command::new(rt).args(["delete", "-f", &b.id]).output();
    let err = std::fs::read_to_string(&errfile).unwrap_or_default();
    let _ = std::fs::remove_file(&errfile);
    (st.success(), err.replace("\\\"", "\""), during)
}

/// The secret is nowhere under `dir` and `dir/private/k` cannot be read.
fn assert_unreadable_on_host(dir: &Path, secret: &[u8]) {
    assert!(
        util::files_containing(dir, secret).is_empty(),
        "secret bytes readable on the host under {}",
        dir.display()
    );
    assert!(std::fs::read(dir.join("private/k")).is_err());
}

fn assert_no_trace_in_world(w: &World, b: &Bundle, secret: &[u8]) {
    let mut hits = util::files_containing(w.dir.path(), secret);
    hits.retain(|p| !p.starts_with(&w.private_d));
    assert!(hits.is_empty(), "secret bytes in privy's files: {hits:?}");
    assert!(util::files_containing(&b.rootfs(), secret).is_empty());
}

/// A bundle whose config `mounts` gets `extra` and whose root propagation is
/// `rshared`, the way Kubernetes' Bidirectional mounts set it up.
fn bundle_with_mount(script: &str, extra: serde_json::Value) -> Bundle {
    let b = Bundle::new(script);
    b.edit(|v| {
        v["mounts"].as_array_mut().unwrap().push(extra);
        v["linux"]["rootfsPropagation"] = "rshared".into();
    });
    b
}

fn b1_check(rt: &str, b: &Bundle, w: &World, host: &SharedDir, secret: &[u8]) {
    let watch = [host.path(), b.path()];
    let before = host_mounts_under(&watch);
    let (created, err, during) = create_and_delete(rt, b, &watch);
    let after = host_mounts_under(&watch);
    assert_eq!(
        during, before,
        "{rt}: privy's tmpfs appeared in the host's mount table while the container existed"
    );
    assert_eq!(after, before, "{rt}: the host's mount table changed");
    assert!(
        !created,
        "{rt} created a container whose tmpfs would propagate to the host"
    );
    assert!(
        err.contains("privy: target /run/private:")
            && err.contains("propagates to")
            && err.contains("in privy's own mount namespace (the host's)"),
        "{rt}: {err}"
    );
    assert_unreadable_on_host(host.path(), secret);
    assert_no_trace_in_world(w, b, secret);
}

fn b1_tmpfs_never_reaches_the_host_through_a_shared_bind_at_run(rt: &str) {
    let w = World::new("", "");
    let s = util::secret("b1bind");
    w.put("k", &s, 0o600);
    let host = SharedDir::new();
    // The mountpoint already exists on the volume: nothing to create there,
    // so only propagation can carry the tmpfs out.
    std::fs::create_dir(host.path().join("private")).unwrap();
    let b = bundle_with_mount(
        "cat /run/private/k",
        serde_json::json!({"destination": "/run", "type": "bind", "source": host.path(),
                           "options": ["rbind", "rw", "rshared"]}),
    );
    b.install(&w);
    b1_check(rt, &b, &w, &host, &s);
}

fn b1_tmpfs_never_reaches_the_host_through_a_run_symlink_to_a_shared_volume(rt: &str) {
    let w = World::new("", "");
    let s = util::secret("b1sym");
    w.put("k", &s, 0o600);
    let host = SharedDir::new();
    std::fs::create_dir(host.path().join("private")).unwrap();
    let b = bundle_with_mount(
        "cat /run/private/k",
        serde_json::json!({"destination": "/data", "type": "bind", "source": host.path(),
                           "options": ["rbind", "rw", "rshared"]}),
    );
    std::os::unix::fs::symlink("/data", b.rootfs().join("run")).unwrap();
    b.install(&w);
    b1_check(rt, &b, &w, &host, &s);
}

/// The positive control: a shared mount whose peer group lives only in the
/// container (a private host directory bound `rshared`) keeps working.
fn b1_a_shared_mount_confined_to_the_container_still_gets_its_files(rt: &str) {
    let w = World::new("", "");
    let s = util::secret("b1ok");
    w.put("k", &s, 0o600);
    let vol = tempfile::Builder::new()
        .prefix("privy-vol-")
        .tempdir()
        .unwrap();
    std::fs::create_dir(vol.path().join("private")).unwrap();
    let b = bundle_with_mount(
        "sha256sum /run/private/k; grep ' /run/private ' /proc/self/mountinfo",
        serde_json::json!({"destination": "/run", "type": "bind", "source": vol.path(),
                           "options": ["rbind", "rw", "rshared"]}),
    );
    b.install(&w);
    let watch = [vol.path(), b.path()];
    let before = host_mounts_under(&watch);
    let out = b.run(rt);
    let so = text(&out.stdout);
    assert!(out.status.success(), "{rt}: {}", text(&out.stderr));
    use sha2::Digest;
    assert!(so.contains(&hex::encode(sha2::Sha256::digest(&s))), "{so}");
    assert!(
        so.contains(" shared:"),
        "the mount should be shared inside: {so}"
    );
    assert_eq!(host_mounts_under(&watch), before);
    assert_unreadable_on_host(vol.path(), &s);
    assert_no_trace_in_world(&w, &b, &s);
}

fn b7_no_directory_is_created_on_a_host_volume_behind_a_run_symlink(rt: &str) {
    let w = World::new("", "");
    let s = util::secret("b7");
    w.put("k", &s, 0o600);
    let vol = tempfile::Builder::new()
        .prefix("privy-vol-")
        .tempdir()
        .unwrap();
    let b = Bundle::new("echo STARTED");
    b.edit(|v| {
        v["mounts"].as_array_mut().unwrap().push(
            serde_json::json!({"destination": "/data", "type": "bind", "source": vol.path(), "options": ["rbind", "rw"]}),
        )
    });
    std::os::unix::fs::symlink("/data", b.rootfs().join("run")).unwrap();
    b.install(&w);
    let out = b.run(rt);
    let err = text(&out.stderr).replace("\\\"", "\"");
    assert!(!out.status.success(), "{rt} started the container");
    assert!(!text(&out.stdout).contains("STARTED"));
    assert!(
        err.contains("would have to create \"/data/private\"")
            && err.contains("not the container's root filesystem"),
        "{rt}: {err}"
    );
    let left: Vec<_> = std::fs::read_dir(vol.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "privy created {left:?} on the host volume");
    assert_no_trace_in_world(&w, &b, &s);
}

fn b9_image_symlinks_onto_the_root_or_system_dirs_stop_the_container(rt: &str) {
    for (to, resolved) in [
        ("/", "\"/\""),
        ("../../..", "\"/\""),
        ("/proc", "\"/proc\""),
        ("/bin", "\"/bin\""),
    ] {
        let w = World::new("", "");
        let s = util::secret("b9");
        w.put("k", &s, 0o600);
        let b = Bundle::new("echo STARTED; ls /bin/sh");
        std::fs::create_dir_all(b.rootfs().join("run")).unwrap();
        std::os::unix::fs::symlink(to, b.rootfs().join("run/private")).unwrap();
        b.install(&w);
        let out = b.run(rt);
        let err = text(&out.stderr).replace("\\\"", "\"");
        assert!(!out.status.success(), "{rt}: {to}: the container started");
        assert!(!text(&out.stdout).contains("STARTED"));
        assert!(
            err.contains(&format!(
                "target /run/private resolves to {resolved} in the image"
            )),
            "{rt}: {to}: {err}"
        );
        assert!(b.rootfs().join("bin/busybox").exists());
        assert_no_trace_in_world(&w, &b, &s);
    }
}

/// Upload `files` (name on the host, destination) to the setup's daemon;
/// returns the ticket.
fn upload(st: &Setup, files: &[(&Path, &str)]) -> String {
    let mut args = vec!["upload".to_string()];
    for (src, dest) in files {
        args.push("--private".into());
        args.push(format!("{}:{dest}", src.display()));
    }
    let out = st.privy(&args);
    assert!(out.status.success(), "upload: {}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

fn b12_paths_too_deep_fail_fast_and_leave_nothing_in_the_rootfs(rt: &str) {
    let st = Setup::new("");
    let _d = st.daemon();
    let s = util::secret("b12");
    let src = st.user_file("k", &s, 0o600);
    // 2000 directories deep, inside every byte limit (4000 bytes of path).
    let deep = format!("{}k", "a/".repeat(2000));
    let ticket = upload(&st, &[(&src, &deep)]);
    let b = Bundle::new("echo STARTED");
    b.edit(|v| v["annotations"] = serde_json::json!({"io.privy.ticket": ticket}));
    b.install(&st.w);
    let started = std::time::Instant::now();
    // A runtime with 512 descriptors passes that limit to its hooks: an
    // injection that keeps one open per directory runs out.
    let out = Command::new("timeout")
        .args(["120", "prlimit", "--nofile=512", "--", rt, "run", "-b"])
        .arg(b.path())
        .arg(&b.id)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = Command::new(rt).args(["delete", "-f", &b.id]).output();
    let took = started.elapsed();
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{rt} started the container");
    assert!(
        err.contains("2001 components deep, over the limit of 32"),
        "{rt}: {err}"
    );
    assert!(took.as_secs() < 30, "{rt} took {took:?}");
    assert!(
        std::fs::symlink_metadata(b.rootfs().join("run")).is_err(),
        "a failed injection left run/ in the rootfs"
    );
    assert_no_trace_in_world(&st.w, &b, &s);
}

fn b18_the_container_gets_only_the_names_it_asked_for(rt: &str) {
    // A source that ignores `names` (the hostile fixture's "ok" mode gives
    // f0, f1 and f2 whatever the request), host-dir, and uploads.
    let wasm = util::guest("hostile");
    let st = Setup::new(&format!(
        "[[source]]\nname = \"greedy\"\nplugin = {wasm:?}\nsha256 = \"{}\"\nconfig = {{ mode = \"ok\" }}\n",
        util::sha256_file(&wasm)
    ));
    let _d = st.daemon();
    let cert = util::secret("b18cert");
    let other = util::secret("b18other");
    let extra = util::secret("b18extra");
    st.w.put("entitlement/cert.pem", &cert, 0o600);
    st.w.put("other.key", &other, 0o600);
    let api = st.user_file("api.key", &util::secret("b18api"), 0o600);
    let ex = st.user_file("extra.key", &extra, 0o600);
    let ticket = upload(&st, &[(&api, "api.key"), (&ex, "extra.key")]);
    let b = Bundle::new("ls -R /run/private");
    b.edit(|v| {
        v["annotations"] = serde_json::json!({
            "io.privy.names": "entitlement/cert.pem,f1,api.key",
            "io.privy.ticket": ticket,
        });
    });
    b.install(&st.w);
    let out = b.run(rt);
    let so = text(&out.stdout);
    assert!(out.status.success(), "{rt}: {}", text(&out.stderr));
    for present in ["cert.pem", "f1", "api.key"] {
        assert!(so.contains(present), "{rt}: {present} missing: {so}");
    }
    for absent in ["other.key", "f0", "f2", "extra.key"] {
        assert!(
            !so.contains(absent),
            "{rt}: {absent} reached the container: {so}"
        );
    }
    // host-dir honours `names` itself; the greedy source's extras and the
    // extra upload are what the host dropped, and the audit names them.
    let log = text(&st.w.log());
    assert!(log.contains("dropped: not in io.privy.names"), "{log}");
    for dropped in ["\"f0\"", "\"f2\"", "\"extra.key\""] {
        assert!(
            log.contains(dropped),
            "{dropped} not audited as dropped: {log}"
        );
    }
    for s in [&other, &extra, &cert] {
        assert!(!util::contains(&st.w.log(), s));
        assert_no_trace_in_world(&st.w, &b, s);
    }
}

fn invalid_user_id_is_named_before_mounting(rt: &str) {
    let w = World::new("", "");
    let s = util::secret("uid");
    w.put("k", &s, 0o600);
    let b = Bundle::new("echo STARTED");
    b.edit(|v| v["process"]["user"] = serde_json::json!({"uid": 4294967295u32, "gid": 0}));
    b.install(&w);
    let out = b.run(rt);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("container user 4294967295:0: host user id 4294967295 is -1"),
        "{rt}: {err}"
    );
    assert!(!err.contains("Invalid argument"), "{err}");
    assert!(std::fs::symlink_metadata(b.rootfs().join("run")).is_err());
}

fn dangling_run_symlink_is_named_in_one_line(rt: &str) {
    let w = World::new("", "");
    w.put("k", &util::secret("dangle"), 0o600);
    let b = Bundle::new("echo STARTED");
    std::os::unix::fs::symlink("/data", b.rootfs().join("run")).unwrap();
    b.install(&w);
    let out = b.run(rt);
    let err = text(&out.stderr).replace("\\\"", "\"");
    assert!(!out.status.success());
    assert!(
        err.contains("target /run/private: \"/run\" in the image is a symlink to \"/data\", which does not exist in the image"),
        "{rt}: {err}"
    );
    assert!(!err.contains("File exists"), "{err}");
    assert!(!b.rootfs().join("data").exists(), "privy created /data");
}

/// B16: a state whose pid shares the hook's own mount namespace (here a
/// plain host process) must not get a mount in that namespace.
#[test]
fn b16_a_pid_in_the_hooks_own_mount_namespace_is_refused() {
    if !util::e2e_ready("runc") {
        return;
    }
    let w = World::new("", "");
    let s = util::secret("b16");
    w.put("k", &s, 0o600);
    let b = Bundle::new("true");
    let mut sleeper = Command::new("sleep")
        .arg("60")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let state = serde_json::json!({
        "ociVersion": "1.0.2", "id": b.id, "status": "creating",
        "pid": sleeper.id(), "bundle": b.path(),
    });
    let watch = [b.path()];
    let before = host_mounts_under(&watch);
    let out = util::privy_with_stdin(
        &[
            "--config",
            w.config.to_str().unwrap(),
            "hook",
            "create-runtime",
        ],
        state.to_string().as_bytes(),
    );
    let during = host_mounts_under(&watch);
    // Whatever happened, leave no mount behind on the host.
    let _ = nix::mount::umount2(
        &b.rootfs().join("run/private"),
        nix::mount::MntFlags::MNT_DETACH,
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_eq!(
        during, before,
        "the hook mounted in its own (the host's) namespace"
    );
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!(
            "pid {} is in privy's own mount namespace",
            sleeper.id()
        )),
        "{err}"
    );
    assert!(std::fs::symlink_metadata(b.rootfs().join("run")).is_err());
    assert_no_trace_in_world(&w, &b, &s);
}

/// A config file in a directory of its own, with `top` first.
fn config_file(dir: &Path, top: &str) -> PathBuf {
    let p = dir.join("privy.toml");
    std::fs::write(
        &p,
        format!(
            "{top}\n[[source]]\nname = \"h\"\nplugin = \"host-dir\"\ngrant.dirs = [{:?}]\n",
            dir.join("private.d")
        ),
    )
    .unwrap();
    p
}

#[test]
fn b9_and_b17_config_check_refuses_system_targets_and_relative_paths() {
    let d = tempfile::tempdir().unwrap();
    for (top, key) in [
        ("target = \"/.\"", "target"),
        ("target = \"/proc/sys\"", "target"),
        ("target = \"/usr/bin\"", "target"),
        ("log_file = \"privy.log\"", "log_file"),
        ("cache_dir = \"cache\"", "cache_dir"),
        ("state_dir = \"state\"", "state_dir"),
        ("audit_key = \"audit.key\"", "audit_key"),
    ] {
        let cfg = config_file(d.path(), top);
        let out =
            util::privy_with_stdin(&["--config", cfg.to_str().unwrap(), "config", "check"], b"");
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{top} passed config check");
        assert!(
            err.starts_with(&format!("privy: config key `{key}`:")) && err.lines().count() == 1,
            "{top}: {err}"
        );
    }
    let cfg = config_file(d.path(), "target = \"/etc/pki/entitlement\"");
    let out = util::privy_with_stdin(&["--config", cfg.to_str().unwrap(), "config", "check"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// B8: `privy run --bundle` rewrites config.json as root in a directory the
/// caller may own; planted links must redirect nothing.
#[test]
fn b8_bundle_rewrite_never_writes_or_reads_through_a_planted_symlink() {
    let d = tempfile::tempdir().unwrap();
    let bundle = d.path().join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    let victim = d.path().join("victim");
    std::fs::write(&victim, b"VICTIM").unwrap();
    let config = serde_json::json!({"ociVersion": "1.0.2", "root": {"path": "rootfs"}});
    std::fs::write(bundle.join("config.json"), config.to_string()).unwrap();
    // Every temporary name privy ever used, pointing at the victim.
    for name in [
        "config.json.privy-tmp",
        &format!("config.privy-tmp-{}", std::process::id()),
    ] {
        std::os::unix::fs::symlink(&victim, bundle.join(name)).unwrap();
    }
    let original =
        privy::run::attach_bundle(&bundle, "pvt_test", Path::new(util::PRIVY), None).unwrap();
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"VICTIM",
        "privy wrote through a link"
    );
    let now: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(now["annotations"]["io.privy.ticket"], "pvt_test");
    assert!(std::fs::symlink_metadata(bundle.join("config.json"))
        .unwrap()
        .is_file());
    privy::run::restore_bundle(&bundle, &original).unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"VICTIM");
    assert_eq!(std::fs::read(bundle.join("config.json")).unwrap(), original);
    // Nothing else left behind but the planted links.
    let mut names: Vec<String> = std::fs::read_dir(&bundle)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    // config.json itself a link to another file (valid JSON, someone
    // else's): refused, never copied into the bundle.
    let other = d.path().join("secret.json");
    std::fs::write(&other, br#"{"token":"do-not-copy"}"#).unwrap();
    std::fs::remove_file(bundle.join("config.json")).unwrap();
    std::os::unix::fs::symlink(&other, bundle.join("config.json")).unwrap();
    let e = privy::run::attach_bundle(&bundle, "pvt_test", Path::new(util::PRIVY), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("symlink"), "{e}");
    assert_eq!(
        std::fs::read(&other).unwrap(),
        br#"{"token":"do-not-copy"}"#
    );
    assert!(std::fs::symlink_metadata(bundle.join("config.json"))
        .unwrap()
        .file_type()
        .is_symlink());
}

/// A rootless hook cannot open the log file, so its logs go to stderr: the
/// error must still be one line, not a tracing ERROR line and a `privy:` one.
#[test]
fn rootless_hook_prints_its_error_once() {
    if !util::is_root() {
        eprintln!("SKIP: not root; cannot run the hook as another user");
        return;
    }
    let d = tempfile::Builder::new()
        .prefix("privy-rl-")
        .tempdir()
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = config_file(
        d.path(),
        &format!(
            "log_file = {:?}\nstate_dir = {:?}\ncache_dir = {:?}",
            d.path().join("root-only/privy.log"),
            d.path().join("state"),
            d.path().join("cache")
        ),
    );
    std::fs::create_dir(d.path().join("root-only")).unwrap();
    std::fs::set_permissions(
        d.path().join("root-only"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    use std::os::unix::process::CommandExt;
    let out = util::output_with_stdin(
        Command::new(util::PRIVY)
            .args(["--config", cfg.to_str().unwrap(), "hook", "create-runtime"])
            .uid(65534)
            .gid(65534),
        br#"{"id":"a/b","pid":1,"bundle":"/nonexistent"}"#,
    );
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("privy: container id"), "{err}");
}
