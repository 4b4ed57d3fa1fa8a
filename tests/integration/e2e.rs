//! End to end, as root, with real runc and real crun and a busybox rootfs.
//! Every test runs against both runtimes; each skips (saying why) only
//! where a runtime, busybox or root is truly absent.

use crate::util::{self, sha256_hex, text, Bundle, World};

on_both_runtimes!(
    container_reads_injected_files_with_right_bytes_owner_and_mode,
    l2_mount_lives_only_in_the_container_mount_namespace,
    l4_run_symlink_to_host_path_resolves_inside_root,
    l4_private_symlink_to_host_path_fails_closed_without_writing_outside,
    l6_failing_source_stops_the_container_and_names_the_cause,
    l6_file_over_the_limit_stops_the_container,
    optional_failing_source_is_skipped,
    no_source_files_means_no_mount_and_no_trace,
    user_namespace_container_gets_files_owned_through_its_mappings,
    l1_tmpfs_is_noswap,
    l7_audit_event_is_one_json_object_with_names_and_fingerprints,
);

/// Nothing of `secret` anywhere but the host's private.d: not in the
/// bundle (rootfs included), not in privy's state, log or cache (L1).
fn assert_no_trace(w: &World, b: &Bundle, secret: &[u8]) {
    util::assert_no_trace(w, b, &[], &[secret]);
}

fn assert_no_run_dir(b: &Bundle) {
    assert!(
        std::fs::symlink_metadata(b.rootfs().join("run")).is_err(),
        "poststop must remove the run/private mountpoint privy created (L3)"
    );
}

fn container_reads_injected_files_with_right_bytes_owner_and_mode(rt: &str) {
    let w = World::new("", "");
    let cert = util::secret("cert");
    let key = util::secret("key");
    w.put("entitlement/cert.pem", &cert, 0o640);
    w.put("api.key", &key, 0o4755);
    let b = Bundle::new(
        "sha256sum /run/private/entitlement/cert.pem /run/private/api.key; \
         stat -c '%n %u %g %a' /run/private /run/private/entitlement /run/private/entitlement/cert.pem /run/private/api.key; \
         grep ' /run/private ' /proc/self/mountinfo; \
         touch /run/private/new 2>/dev/null && echo WRITABLE || echo READONLY",
    );
    b.edit(|v| v["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1001}));
    b.install(&w);
    let out = b.run(rt);
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{rt} failed: {se}");
    assert!(
        so.contains(&format!(
            "{}  /run/private/entitlement/cert.pem",
            sha256_hex(&cert)
        )),
        "{so}"
    );
    assert!(
        so.contains(&format!("{}  /run/private/api.key", sha256_hex(&key))),
        "{so}"
    );
    for line in [
        "/run/private 1000 1001 700",
        "/run/private/entitlement 1000 1001 700",
        "/run/private/entitlement/cert.pem 1000 1001 640",
        "/run/private/api.key 1000 1001 644",
    ] {
        assert!(so.lines().any(|l| l == line), "missing {line:?} in {so}");
    }
    let mnt = so
        .lines()
        .find(|l| l.contains(" /run/private "))
        .expect("mountinfo line");
    let opts = mnt.split_whitespace().nth(5).unwrap();
    for o in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(
            opts.split(',').any(|x| x == o),
            "mount options {opts} lack {o}"
        );
    }
    assert!(mnt.contains(" - tmpfs "), "{mnt}");
    assert!(so.contains("READONLY") && !so.contains("WRITABLE"));
    assert!(!util::contains(&out.stdout, &cert) && !util::contains(&out.stderr, &cert));
    assert_no_trace(&w, &b, &cert);
    assert_no_trace(&w, &b, &key);
    assert_no_run_dir(&b);
    // One audit event naming the files, never their bytes, in a log only root reads.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(w.dir.path().join("privy.log"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "log file mode {mode:o}");
    let log = text(&w.log());
    assert!(
        log.contains("injected")
            && log.contains("entitlement/cert.pem")
            && log.contains("hmac-sha256:"),
        "{log}"
    );
}

fn l2_mount_lives_only_in_the_container_mount_namespace(rt: &str) {
    let w = World::new("", "");
    let s = util::secret("ns");
    w.put("k", &s, 0o600);
    let b = Bundle::new("sleep 60");
    b.install(&w);
    // The container's init inherits create's stdio, so no pipes: a pipe
    // would stay open until the container exits.
    let errfile = w.dir.path().join("create.err");
    let st = std::process::Command::new("timeout")
        .args(["60", rt, "create", "-b"])
        .arg(b.path())
        .arg(&b.id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&errfile).unwrap())
        .status()
        .unwrap();
    let cleanup = || {
        let _ = std::process::Command::new(rt)
            .args(["delete", "-f", &b.id])
            .output();
    };
    if !st.success() {
        cleanup();
        panic!(
            "{rt} create failed: {}",
            std::fs::read_to_string(&errfile).unwrap_or_default()
        );
    }
    let state = std::process::Command::new(rt)
        .args(["state", &b.id])
        .output()
        .unwrap();
    let state: serde_json::Value = serde_json::from_slice(&state.stdout).unwrap();
    let pid = state["pid"].as_i64().unwrap();
    let inside = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    cleanup();
    assert!(
        inside
            .lines()
            .any(|l| l.split_whitespace().nth(4) == Some("/run/private")),
        "not mounted in the container"
    );
    let rootfs = b.rootfs().display().to_string();
    assert!(
        !host
            .lines()
            .any(|l| l.contains("/run/private") || l.contains(&format!("{rootfs}/run"))),
        "the host's mount table shows privy's tmpfs"
    );
    assert_no_trace(&w, &b, &s);
    assert_no_run_dir(&b);
}

/// A host directory, outside any rootfs, that a hostile image points at.
fn host_bait() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("privy-bait-")
        .tempdir()
        .unwrap()
}

fn l4_run_symlink_to_host_path_resolves_inside_root(rt: &str) {
    let w = World::new("", "");
    let s = util::secret("sym");
    w.put("k", &s, 0o600);
    let bait = host_bait();
    let b = Bundle::new("sha256sum /run/private/k");
    // rootfs/run -> <bait> (absolute); the same path also exists inside the
    // root, so a confined resolution lands there and never on the host.
    std::os::unix::fs::symlink(bait.path(), b.rootfs().join("run")).unwrap();
    let inside = b.rootfs().join(bait.path().strip_prefix("/").unwrap());
    std::fs::create_dir_all(&inside).unwrap();
    b.install(&w);
    let out = b.run(rt);
    assert!(out.status.success(), "{rt}: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&sha256_hex(&s)));
    assert_eq!(
        std::fs::read_dir(bait.path()).unwrap().count(),
        0,
        "privy wrote onto the host through a symlink"
    );
    assert!(
        !inside.join("private").exists(),
        "poststop removes the mountpoint it created"
    );
    assert_no_trace(&w, &b, &s);
}

fn l4_private_symlink_to_host_path_fails_closed_without_writing_outside(rt: &str) {
    let w = World::new("", "");
    let s = util::secret("sym2");
    w.put("k", &s, 0o600);
    let bait = host_bait();
    let b = Bundle::new("echo STARTED");
    std::fs::create_dir_all(b.rootfs().join("run")).unwrap();
    std::os::unix::fs::symlink(bait.path(), b.rootfs().join("run/private")).unwrap();
    b.install(&w);
    let out = b.run(rt);
    assert!(
        !out.status.success(),
        "{rt} started a container whose target is a dangling symlink"
    );
    assert!(!text(&out.stdout).contains("STARTED"));
    assert!(
        text(&out.stderr).contains("target /run/private"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_dir(bait.path()).unwrap().count(),
        0,
        "privy wrote onto the host through a symlink"
    );
    assert_no_trace(&w, &b, &s);
}

fn hostile_source(mode: &str, required: bool) -> String {
    let wasm = util::guest("hostile");
    format!(
        "[[source]]\nname = \"broken\"\nplugin = {wasm:?}\nsha256 = \"{}\"\nrequired = {required}\nconfig = {{ mode = \"{mode}\" }}\n",
        util::sha256_file(&wasm)
    )
}

fn l6_failing_source_stops_the_container_and_names_the_cause(rt: &str) {
    let w = World::new("", &hostile_source("fail", true));
    let s = util::secret("fail");
    w.put("k", &s, 0o600);
    let b = Bundle::new("echo STARTED");
    b.install(&w);
    let out = b.run(rt);
    // runc quotes the hook's stderr Go-style; crun relays our line as is.
    let err = text(&out.stderr).replace("\\\"", "\"");
    assert!(!out.status.success());
    assert!(!text(&out.stdout).contains("STARTED"), "the container ran");
    assert!(
        err.contains("source \"broken\": unavailable: backend is down"),
        "{err}"
    );
    assert_no_trace(&w, &b, &s);
    assert_no_run_dir(&b);
}

fn l6_file_over_the_limit_stops_the_container(rt: &str) {
    let w = World::new("[limits]\nmax_file_bytes = 16\n", "");
    let s = util::secret("big");
    w.put("too-big.key", &s, 0o600);
    let b = Bundle::new("echo STARTED");
    b.install(&w);
    let out = b.run(rt);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(!text(&out.stdout).contains("STARTED"));
    assert!(
        err.contains("too-big.key") && err.contains("limits.max_file_bytes (16)"),
        "{err}"
    );
    assert!(!util::contains(&out.stderr, &s));
    assert_no_trace(&w, &b, &s);
}

fn optional_failing_source_is_skipped(rt: &str) {
    let w = World::new("", &hostile_source("spin", false));
    let s = util::secret("opt");
    w.put("k", &s, 0o600);
    let b = Bundle::new("sha256sum /run/private/k");
    b.install(&w);
    let out = b.run(rt);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&sha256_hex(&s)));
    let log = text(&w.log());
    assert!(
        log.contains("optional source failed") && log.contains("CPU limit"),
        "{log}"
    );
}

fn no_source_files_means_no_mount_and_no_trace(rt: &str) {
    let w = World::new("", "");
    let b = Bundle::new("test -e /run/private && echo PRESENT || echo ABSENT");
    b.install(&w);
    let out = b.run(rt);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ABSENT"));
    assert_no_run_dir(&b);
}

fn user_namespace_container_gets_files_owned_through_its_mappings(rt: &str) {
    use std::os::unix::fs::PermissionsExt;
    let w = World::new("", "");
    let s = util::secret("userns");
    w.put("k", &s, 0o600);
    let b = Bundle::new("stat -c '%u %g %a' /run/private/k /run/private; sha256sum /run/private/k; grep ' /run/private ' /proc/self/mountinfo");
    // The container's root is host uid 100000: it must be able to reach the rootfs.
    std::fs::set_permissions(b.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    b.edit(|v| {
        v["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1000});
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "user"}));
        v["linux"]["uidMappings"] =
            serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        v["linux"]["gidMappings"] =
            serde_json::json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    });
    b.install(&w);
    let out = b.run(rt);
    let so = text(&out.stdout);
    assert!(out.status.success(), "{rt}: {}", text(&out.stderr));
    assert!(
        so.lines().any(|l| l == "1000 1000 600"),
        "file not owned by the container user: {so}"
    );
    assert!(
        so.lines().any(|l| l == "1000 1000 700"),
        "tmpfs root not owned by the container user: {so}"
    );
    assert!(so.contains(&sha256_hex(&s)));
    assert!(
        so.contains("uid=101000,gid=201000"),
        "tmpfs not owned by the mapped host ids: {so}"
    );
    assert_no_trace(&w, &b, &s);
    assert_no_run_dir(&b);
}

/// The kernel's version, `(major, minor)`.
fn kernel() -> (u32, u32) {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut it = r.trim().split(['.', '-']).map(|p| p.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

fn l1_tmpfs_is_noswap(rt: &str) {
    if kernel() < (6, 4) {
        eprintln!(
            "SKIP: tmpfs has no `noswap` before Linux 6.4 (this is {:?})",
            kernel()
        );
        return;
    }
    let w = World::new("", "");
    let s = util::secret("noswap");
    w.put("k", &s, 0o600);
    let b = Bundle::new("grep ' /run/private ' /proc/self/mountinfo");
    b.install(&w);
    let out = b.run(rt);
    let so = text(&out.stdout);
    assert!(out.status.success(), "{rt}: {}", text(&out.stderr));
    // The super options, after ` - tmpfs SOURCE `.
    let sup = so
        .lines()
        .find(|l| l.contains(" /run/private "))
        .and_then(|l| l.split(" - ").nth(1))
        .and_then(|l| l.split_whitespace().nth(2))
        .expect("mountinfo line");
    assert!(
        sup.split(',').any(|o| o == "noswap"),
        "private pages may be swapped out to disk: tmpfs options {sup}"
    );
    assert_no_trace(&w, &b, &s);
}

fn l7_audit_event_is_one_json_object_with_names_and_fingerprints(rt: &str) {
    let w = World::new("", "");
    let cert = util::secret("audit-cert");
    let key = util::secret("audit-key");
    w.put("entitlement/cert.pem", &cert, 0o644);
    w.put("api.key", &key, 0o600);
    let b = Bundle::new("true");
    b.install(&w);
    let out = b.run(rt);
    assert!(out.status.success(), "{rt}: {}", text(&out.stderr));
    let log = w.log();
    let line = text(&log)
        .lines()
        .find(|l| l.contains("\"injected\""))
        .map(str::to_owned)
        .expect("an injected event in the log");
    let v: serde_json::Value = serde_json::from_str(&line).expect("one JSON line");
    assert_eq!(v["target"], "privy::audit");
    let f = &v["fields"];
    assert_eq!(f["message"], "injected");
    assert_eq!(f["container"], b.id.as_str());
    let inj = &f["injection"];
    assert!(inj.is_object(), "injection is not one JSON object: {inj}");
    assert_eq!(inj["count"], 2);
    assert_eq!(inj["bytes"], (cert.len() + key.len()) as u64);
    let files = inj["files"].as_array().expect("files");
    let paths: Vec<&str> = files.iter().filter_map(|x| x["path"].as_str()).collect();
    assert_eq!(paths, ["api.key", "entitlement/cert.pem"]);
    for x in files {
        assert_eq!(x["source"], "host-dir");
        assert!(x["size"].as_u64().is_some_and(|n| n > 0), "{x}");
        assert!(x["mode"].is_string(), "{x}");
        let fp = x["fingerprint"].as_str().unwrap_or_default();
        assert!(
            fp.starts_with("hmac-sha256:") && fp.len() == "hmac-sha256:".len() + 16,
            "{x}"
        );
    }
    // Names, sizes and keyed fingerprints; never a value.
    assert!(!util::contains(&log, &cert) && !util::contains(&log, &key));
    assert!(
        !line.contains(&sha256_hex(&cert)),
        "a plain hash of a value"
    );
}

/// A bundle with `linux.mountLabel` (as engines write on SELinux hosts) on
/// this host, which has no SELinux: the tmpfs gets no `context=` (a kernel
/// without SELinux would refuse it and the container would not start),
/// and the file is there. With SELinux on, the option is proved through
/// the recording OS (`materialize::tests`); no enforcing host was tried.
///
/// crun only: runc 1.1 (Debian 12's) adds `context=` to its own `/dev`
/// tmpfs whenever a mountLabel is set, SELinux or not, and so cannot start
/// such a bundle on this host at all (EINVAL before any hook runs).
#[test]
fn selinux_mount_label_without_selinux_adds_no_context() {
    let rt = "crun";
    if !util::e2e_ready(rt) {
        return;
    }
    if std::path::Path::new("/sys/fs/selinux/enforce").exists() {
        eprintln!("SKIP: this host has SELinux; the no-SELinux case cannot be tried here");
        return;
    }
    let w = World::new("", "");
    let secret = util::secret("selinux");
    w.put("k", &secret, 0o644);
    let b = Bundle::new("sha256sum /run/private/k; grep ' /run/private ' /proc/self/mountinfo");
    b.edit(|v| {
        v["linux"]["mountLabel"] = serde_json::json!("system_u:object_r:container_file_t:s0:c1,c2")
    });
    b.install(&w);
    let out = b.run(rt);
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{rt} failed: {se}");
    assert!(so.contains(&sha256_hex(&secret)), "{so}");
    assert!(!so.contains("context="), "{so}");
}
