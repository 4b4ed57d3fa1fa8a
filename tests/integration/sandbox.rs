//! Hostile guests (built from `plugins/hostile` by the build) against the
//! real plugin host: each misbehaviour is contained within its limit with
//! a clear error, and the host keeps working afterwards (L5, L6).

use privy::check::{check, CheckError};
use privy::config::{Grant, Limits};
use privy::fetch::Fetched;
use privy::plan::{PluginRef, Precedence};
use privy::plugin::{PluginError, PluginHost, RawFile};
use std::collections::BTreeMap;

use crate::util;

use util::{hostile, plugin_host as host};

fn small_limits() -> Limits {
    Limits {
        plugin_memory_bytes: 32 << 20,
        plugin_cpu_ms: 300,
        plugin_timeout_ms: 5000,
        ..Limits::default()
    }
}

fn run_mode(
    mode: &str,
    limits: &Limits,
    grant: &Grant,
    extra: &[(&str, &str)],
) -> Result<Vec<RawFile>, PluginError> {
    let mut config: BTreeMap<String, String> = [("mode".to_string(), mode.to_string())].into();
    for (k, v) in extra {
        config.insert(k.to_string(), v.to_string());
    }
    util::call_plugin(host(), hostile(), "hostile", grant, &config, limits)
}

fn run(mode: &str) -> Result<Vec<RawFile>, PluginError> {
    run_mode(mode, &small_limits(), &Grant::default(), &[])
}

/// After any misbehaviour, the same host still serves a good call.
fn host_still_healthy() {
    let files = run_mode("ok", &small_limits(), &Grant::default(), &[("count", "3")])
        .expect("healthy call after a hostile one");
    assert_eq!(files.len(), 3);
}

fn checked(files: Vec<RawFile>) -> Result<(), CheckError> {
    check(
        vec![Fetched {
            source: "hostile".into(),
            precedence: Precedence::Operator,
            files,
            expires: None,
        }],
        &Limits::default(),
    )
    .map(|_| ())
}

#[test]
fn l5_endless_loop_is_stopped_by_the_cpu_limit() {
    let e = run("spin").unwrap_err();
    assert!(matches!(e, PluginError::Cpu(300)), "{e}");
    assert_eq!(e.to_string(), "CPU limit of 300 ms exceeded");
    host_still_healthy();
}

#[test]
fn l5_memory_bomb_is_stopped_by_the_memory_limit() {
    let e = run("membomb").unwrap_err();
    assert!(matches!(e, PluginError::Memory(32)), "{e}");
    host_still_healthy();
}

#[test]
fn deep_recursion_is_a_trap_not_a_crash() {
    // Rust keeps most of a frame on its shadow stack in linear memory, so
    // runaway recursion ends as a stack overflow or an out-of-bounds trap.
    let e = run("recursion").unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, PluginError::Trap(_)), "{m}");
    assert!(
        m.contains("stack overflow") || m.contains("deep recursion"),
        "{m}"
    );
    host_still_healthy();
}

#[test]
fn panic_is_a_trap_with_one_clear_line() {
    let e = run("panic").unwrap_err().to_string();
    assert!(e.contains("panicked or aborted"), "{e}");
    assert!(!e.contains('\n'), "{e}");
    host_still_healthy();
}

#[test]
fn l5_read_outside_the_grant_fails() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("inside"), "x").unwrap();
    let grant = Grant {
        dirs: vec![d.path().to_owned()],
        ..Grant::default()
    };
    let dir = d.path().to_str().unwrap();
    let e = run_mode("escape-read", &small_limits(), &grant, &[("dir", dir)]).unwrap_err();
    assert!(
        matches!(&e, PluginError::Source { kind: "denied", .. }),
        "{e}"
    );
    host_still_healthy();
}

#[test]
fn output_over_the_cap_is_refused() {
    // With memory to build it, 64 MiB of output passes the sandbox and is
    // refused by the check stage; with the default 64 MiB memory cap the
    // plugin cannot even build it.
    let roomy = Limits {
        plugin_memory_bytes: 512 << 20,
        ..small_limits()
    };
    let files = run_mode("big-output", &roomy, &Grant::default(), &[]).unwrap();
    let e = checked(files).unwrap_err();
    assert!(matches!(e, CheckError::TotalTooBig { .. }), "{e}");
    let e = run_mode("big-output", &Limits::default(), &Grant::default(), &[]).unwrap_err();
    assert!(matches!(e, PluginError::Memory(64)), "{e}");
}

#[test]
fn too_many_files_are_refused() {
    let roomy = Limits {
        plugin_memory_bytes: 256 << 20,
        plugin_cpu_ms: 20_000,
        plugin_timeout_ms: 60_000,
        ..Limits::default()
    };
    let files = run_mode("many-files", &roomy, &Grant::default(), &[]).unwrap();
    assert_eq!(files.len(), 100_000);
    let e = checked(files).unwrap_err();
    assert!(
        matches!(
            e,
            CheckError::SourceTooMany {
                count: 100_000,
                limit: 1024,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn escaping_and_malformed_paths_are_refused_by_check() {
    for mode in ["dotdot", "absolute", "nul", "long"] {
        let files = run(mode).unwrap();
        let e = checked(files).unwrap_err();
        assert!(
            matches!(&e, CheckError::Path { name, .. } if name == "hostile"),
            "{mode}: {e}"
        );
    }
}

#[test]
fn same_path_twice_is_refused() {
    let e = checked(run("dup").unwrap()).unwrap_err();
    assert!(matches!(e, CheckError::Duplicate { .. }), "{e}");
}

#[test]
fn log_flood_is_capped_and_contained() {
    // A million host calls: either the CPU limit stops it or it finishes;
    // both are contained, and at most 100 lines are logged.
    match run("log-flood") {
        Ok(files) => assert!(files.is_empty()),
        Err(e) => assert!(matches!(e, PluginError::Cpu(_)), "{e}"),
    }
    host_still_healthy();
}

#[test]
fn source_error_is_reported_with_its_kind() {
    let e = run("fail").unwrap_err().to_string();
    assert_eq!(e, "unavailable: backend is down (on purpose)");
}

#[test]
fn wall_clock_timeout_applies_even_within_cpu_budget() {
    let slow = Limits {
        plugin_cpu_ms: 60_000,
        plugin_timeout_ms: 200,
        ..small_limits()
    };
    let e = run_mode("spin", &slow, &Grant::default(), &[]).unwrap_err();
    assert!(matches!(e, PluginError::Timeout(200)), "{e}");
    host_still_healthy();
}

#[test]
fn a_module_that_is_not_a_component_is_refused() {
    let e = host()
        .load_bytes(b"\0asm\x01\0\0\0")
        .err()
        .expect("refused");
    assert!(matches!(e, PluginError::Incompatible(_)), "{e}");
}

#[test]
fn contract_versions_follow_the_written_policy() {
    use privy::plugin::compatible;
    assert!(compatible("0.1.0") && compatible("0.1.7"));
    assert!(!compatible("0.2.0") && !compatible("1.0.0") && !compatible("junk"));
}

#[test]
fn nothing_ambient_env_is_empty() {
    // The `ok` mode works without any grant at all: the sandbox gives it
    // nothing and it needs nothing.
    let files = run_mode(
        "ok",
        &small_limits(),
        &Grant::default(),
        &[("count", "1"), ("size", "5")],
    )
    .unwrap();
    assert_eq!(files[0].data.expose(), b"aaaaa");
}

#[test]
fn symlink_following_read_out_of_the_grant_fails() {
    let d = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/etc/passwd", d.path().join("link")).unwrap();
    let grant = Grant {
        dirs: vec![d.path().to_owned()],
        ..Grant::default()
    };
    let e = run_mode(
        "symlink-read",
        &small_limits(),
        &grant,
        &[("dir", d.path().to_str().unwrap())],
    )
    .unwrap_err();
    assert!(
        matches!(&e, PluginError::Source { kind: "denied", .. }),
        "{e}"
    );
    host_still_healthy();
}

#[test]
fn connecting_to_a_host_not_granted_fails() {
    // A listener that would accept, so only the sandbox can refuse.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let to = l.local_addr().unwrap().to_string();
    let e = run_mode(
        "connect",
        &small_limits(),
        &Grant::default(),
        &[("to", &to)],
    )
    .unwrap_err();
    assert!(
        matches!(&e, PluginError::Source { kind: "denied", .. }),
        "{e}"
    );
    l.set_nonblocking(true).unwrap();
    assert!(l.accept().is_err(), "the plugin reached the listener");
}

#[test]
fn invalid_utf8_path_is_refused_at_the_boundary() {
    let e = run("bad-utf8").unwrap_err().to_string();
    assert!(e.contains("utf-8") || e.contains("UTF-8"), "{e}");
    host_still_healthy();
}

#[test]
fn a_component_of_another_world_is_refused() {
    // Exports a plain function, not privy:source/source.
    let wasm = wat::parse_str(
        r#"(component
             (core module $m (func (export "f")))
             (core instance $i (instantiate $m))
             (func (export "hello") (canon lift (core func $i "f"))))"#,
    )
    .unwrap();
    let e = host().load_bytes(&wasm).err().expect("refused");
    assert!(matches!(e, PluginError::Incompatible(_)), "{e}");
    assert!(e.to_string().contains("privy:source/source@0.1.0"), "{e}");
}

#[test]
fn a_component_built_for_another_contract_version_is_refused_with_both_versions() {
    let wasm = wat::parse_str(
        r#"(component
             (import "privy:source/host@0.2.0" (instance)))"#,
    )
    .unwrap();
    let e = host().load_bytes(&wasm).err().expect("refused").to_string();
    assert!(
        e.contains("privy:source@0.2.0") && e.contains("privy:source@0.1.0"),
        "{e}"
    );
}

#[test]
fn a_component_that_traps_while_instantiating_is_contained() {
    // Right world and exports, so it loads; its static constructor traps
    // during instantiation, before `fetch` is ever called.
    let plugin = host()
        .load_bytes(&std::fs::read(util::guest("trap_init")).unwrap())
        .unwrap();
    let (grant, config, limits) = (Grant::default(), BTreeMap::new(), small_limits());
    let e = util::call_plugin(host(), &plugin, "trap-init", &grant, &config, &limits).unwrap_err();
    assert!(matches!(e, PluginError::Trap(_)), "{e}");
    assert!(e.to_string().contains("unreachable"), "{e}");
    host_still_healthy();
}

#[test]
fn pooled_host_keeps_the_same_limits_and_recovers() {
    let limits = small_limits();
    let pooled = PluginHost::new_pooled(util::shared_cache(), &limits, 2).unwrap();
    let plugin = pooled
        .load_bytes(&std::fs::read(util::guest("hostile")).unwrap())
        .unwrap();
    let grant = Grant::default();
    let call = |mode: &str| {
        let config: BTreeMap<String, String> = [("mode".to_string(), mode.to_string())].into();
        util::call_plugin(&pooled, &plugin, "hostile", &grant, &config, &limits)
    };
    assert!(matches!(
        call("membomb").unwrap_err(),
        PluginError::Memory(32)
    ));
    assert!(matches!(call("spin").unwrap_err(), PluginError::Cpu(300)));
    // More calls than slots: each slot is returned after its call.
    for _ in 0..5 {
        assert_eq!(call("ok").unwrap().len(), 3);
    }
}

// ---- B4: nothing privy opens on a source's behalf may block ----

/// A FIFO at `p`, owned by root (the tests run as root) and mode 0644, as a
/// pinned `.wasm` must be.
fn mkfifo(p: &std::path::Path) {
    nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// Whether some process still has `fifo` open for reading (or is blocked
/// opening it): opening the write end without blocking succeeds only then.
/// The open also releases such a reader, so a test never leaves one stuck.
fn fifo_has_a_reader(fifo: &std::path::Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(fifo)
        .is_ok()
}

/// Run the privy binary; its output and wall time, or a failure naming the
/// command if it has not ended after `bound` (then it is killed, and every
/// FIFO in `fifos` released so nothing stays blocked).
fn privy_bounded(
    args: &[&str],
    bound: std::time::Duration,
    fifos: &[&std::path::Path],
) -> (std::process::Output, std::time::Duration) {
    use std::process::{Command, Stdio};
    let started = std::time::Instant::now();
    let mut child = Command::new(util::PRIVY)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while started.elapsed() < bound {
        if child.try_wait().unwrap().is_some() {
            let took = started.elapsed();
            return (child.wait_with_output().unwrap(), took);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    for f in fifos {
        fifo_has_a_reader(f);
    }
    let out = child.wait_with_output().unwrap();
    panic!(
        "privy {args:?} still ran after {bound:?} (stderr: {})",
        util::text(&out.stderr)
    );
}

/// A config whose plugin wall clock is `ms`, with the hostile fixture and
/// the World's `host-dir` warm in the shared cache (so the binary does not
/// compile them inside the bound).
fn world_with_timeout(ms: u64, sources: &str) -> util::World {
    hostile();
    host()
        .load(&privy::plan::PluginRef::Embedded("host-dir".into()))
        .unwrap();
    util::World::new(&format!("[limits]\nplugin_timeout_ms = {ms}\n"), sources)
}

/// What a FIFO open ends with: one `privy:` line that names the source and
/// says it is a FIFO, within the wall-clock limit, and no reader left on it.
fn assert_fifo_refused(
    out: &std::process::Output,
    took: std::time::Duration,
    fifo: &std::path::Path,
    source: &str,
) {
    let err = util::text(&out.stderr);
    assert!(!out.status.success(), "it succeeded: {err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(
        err.starts_with(&format!("privy: source \"{source}\": ")),
        "{err}"
    );
    assert!(
        err.contains("FIFO") || err.contains("not permitted"),
        "{err}"
    );
    assert!(
        took < std::time::Duration::from_millis(LIMIT_MS),
        "took {took:?}, the limit is {LIMIT_MS} ms"
    );
    assert!(!fifo_has_a_reader(fifo), "a reader is still on the FIFO");
}

/// The wall clock the B4 tests give a plugin.
const LIMIT_MS: u64 = 3000;
/// How long they let privy run before calling it a hang.
const HANG: std::time::Duration = std::time::Duration::from_secs(20);

#[test]
fn b4_fifo_in_a_granted_dir_opened_through_wasi_is_refused_within_the_limit() {
    let w = world_with_timeout(LIMIT_MS, "");
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("fifo");
    mkfifo(&fifo);
    // Directly, and through a symlink inside the grant.
    std::os::unix::fs::symlink("fifo", d.path().join("link")).unwrap();
    let wasm = util::guest("hostile");
    for name in ["fifo", "link"] {
        let path = d.path().join(name);
        let (out, took) = privy_bounded(
            &[
                "--config",
                w.config.to_str().unwrap(),
                "plugin",
                "run",
                wasm.to_str().unwrap(),
                "--grant-dir",
                d.path().to_str().unwrap(),
                "-c",
                "mode=read-path",
                "-c",
                &format!("path={}", path.display()),
            ],
            HANG,
            &[&fifo],
        );
        assert_fifo_refused(&out, took, &fifo, "hostile");
    }
}

#[test]
fn b4_fifo_in_grant_files_read_through_read_file_is_refused_within_the_limit() {
    let w = world_with_timeout(LIMIT_MS, "");
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("token");
    mkfifo(&fifo);
    let wasm = util::guest("hostile");
    let (out, took) = privy_bounded(
        &[
            "--config",
            w.config.to_str().unwrap(),
            "plugin",
            "run",
            wasm.to_str().unwrap(),
            "--grant-file",
            fifo.to_str().unwrap(),
            "-c",
            "mode=read-file",
            "-c",
            &format!("path={}", fifo.display()),
        ],
        HANG,
        &[&fifo],
    );
    assert_fifo_refused(&out, took, &fifo, "hostile");
    assert!(util::text(&out.stderr).contains("is a FIFO, not a regular file"));
}

#[test]
fn b4_fifo_as_the_pinned_wasm_fails_config_check_within_the_limit() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("plugin.wasm");
    mkfifo(&fifo);
    let source = format!(
        "[[source]]\nname = \"piped\"\nplugin = {fifo:?}\nsha256 = \"{}\"\n",
        "0".repeat(64)
    );
    let w = world_with_timeout(LIMIT_MS, &source);
    let (out, took) = privy_bounded(
        &["--config", w.config.to_str().unwrap(), "config", "check"],
        HANG,
        &[&fifo],
    );
    assert_fifo_refused(&out, took, &fifo, "piped");
    let err = util::text(&out.stderr);
    assert!(
        err.contains(&format!("plugin {}: is a FIFO", fifo.display())),
        "{err}"
    );
    // `plugin check` and `plugin run` take the same care with a named file.
    for cmd in ["check", "run"] {
        let (out, _) = privy_bounded(
            &[
                "--config",
                w.config.to_str().unwrap(),
                "plugin",
                cmd,
                fifo.to_str().unwrap(),
            ],
            HANG,
            &[&fifo],
        );
        let err = util::text(&out.stderr);
        assert!(err.contains("is a FIFO, not a regular file"), "{err}");
        assert!(!fifo_has_a_reader(&fifo));
    }
}

#[test]
fn b4_devices_and_sockets_in_a_grant_are_refused_not_read() {
    // /dev/zero would never end; a socket would not open at all.
    let d = tempfile::tempdir().unwrap();
    let sock = d.path().join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::os::unix::fs::symlink("/dev/zero", d.path().join("zero")).unwrap();
    let grant = Grant {
        dirs: vec![d.path().to_owned()],
        files: vec!["/dev/zero".into(), sock.clone()],
        ..Grant::default()
    };
    for (mode, path, says) in [
        (
            "read-file",
            "/dev/zero".to_string(),
            "is a character device",
        ),
        ("read-file", sock.display().to_string(), ""),
        ("read-path", sock.display().to_string(), ""),
    ] {
        let e = run_mode(mode, &small_limits(), &grant, &[("path", &path)]).unwrap_err();
        assert!(
            matches!(&e, PluginError::Source { kind: "denied", .. }),
            "{mode} {path}: {e}"
        );
        assert!(e.to_string().contains(says), "{e}");
    }
    // The symlink to /dev/zero points outside the grant: refused as before.
    let zero = d.path().join("zero").display().to_string();
    let e = run_mode("read-path", &small_limits(), &grant, &[("path", &zero)]).unwrap_err();
    assert!(
        matches!(&e, PluginError::Source { kind: "denied", .. }),
        "{e}"
    );
    host_still_healthy();
}

#[test]
fn wasi_opens_of_regular_files_and_directories_still_work_after_b4() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("sub")).unwrap();
    std::fs::write(d.path().join("sub/k"), b"value").unwrap();
    std::os::unix::fs::symlink("sub/k", d.path().join("link")).unwrap();
    let grant = Grant {
        dirs: vec![d.path().to_owned()],
        ..Grant::default()
    };
    for p in ["sub/k", "link"] {
        let path = d.path().join(p).display().to_string();
        let files = run_mode("read-path", &small_limits(), &grant, &[("path", &path)]).unwrap();
        assert_eq!(files[0].data.expose(), b"value");
    }
    // Escapes stay refused by the new open exactly as by wasmtime-wasi's.
    let dir = d.path().to_str().unwrap();
    let e = run_mode("escape-read", &small_limits(), &grant, &[("dir", dir)]).unwrap_err();
    assert!(
        matches!(&e, PluginError::Source { kind: "denied", .. }),
        "{e}"
    );
}

fn b4_runtime_start_with_a_fifo_source_fails_with_privys_line(rt: &str) {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("token");
    mkfifo(&fifo);
    let wasm = util::guest("hostile");
    let source = format!(
        "[[source]]\nname = \"piped\"\nplugin = {wasm:?}\nsha256 = \"{}\"\n\
         config = {{ mode = \"read-file\", path = {fifo:?} }}\n[source.grant]\nfiles = [{fifo:?}]\n",
        util::sha256_file(&wasm)
    );
    let w = world_with_timeout(LIMIT_MS, &source);
    let b = util::Bundle::new("echo STARTED");
    b.install(&w);
    let started = std::time::Instant::now();
    let out = b.run(rt);
    let took = started.elapsed();
    fifo_has_a_reader(&fifo);
    // runc quotes the hook's stderr Go-style; crun relays our line as is.
    let err = util::text(&out.stderr).replace("\\\"", "\"");
    assert!(!out.status.success());
    assert!(
        !util::text(&out.stdout).contains("STARTED"),
        "the container ran"
    );
    assert!(
        err.contains("privy: source \"piped\": denied: read-file:") && err.contains("is a FIFO"),
        "{err}"
    );
    // Ended by privy, not by the runtime's 30 s hook timeout.
    assert!(took < std::time::Duration::from_secs(20), "took {took:?}");
    assert!(!err.contains("timed out"), "{err}");
}

on_both_runtimes!(b4_runtime_start_with_a_fifo_source_fails_with_privys_line);

// ---- messages ----

#[test]
fn garbage_wasm_message_is_one_whole_line_not_cut_at_expected() {
    let e = host()
        .load_bytes(b"this is not a wasm file at all")
        .err()
        .expect("refused")
        .to_string();
    assert!(!e.contains('\n'), "{e}");
    // wasmparser pretty-prints what it expected and what it found over
    // several lines; both halves must survive, closed.
    assert!(e.contains("expected=[0x0, 0x61, 0x73, 0x6d]"), "{e}");
    assert!(e.contains("actual=[0x74, 0x68, 0x69, 0x73]"), "{e}");
    // And as the CLI prints it: one line, naming the file.
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("garbage.wasm");
    std::fs::write(&f, b"this is not a wasm file at all").unwrap();
    let w = util::World::new("", "");
    let out = w.privy(&["plugin", "check", f.to_str().unwrap()]);
    let err = util::text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("{}: not a privy source component:", f.display()))
            && err.contains("actual=[0x74, 0x68, 0x69, 0x73]"),
        "{err}"
    );
}

// ---- B15: a reader that stops early ----

/// Run privy with stdout a pipe whose read end is closed at once (before
/// privy prints anything, which comes after loading a plugin or scanning),
/// as `| head -1` does to a long output.
fn privy_into_closed_pipe(args: &[&str]) -> std::process::Output {
    use std::process::{Command, Stdio};
    let mut child = Command::new(util::PRIVY)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

fn assert_quiet_exit(out: &std::process::Output, code: i32) {
    let err = util::text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
    assert!(err.is_empty(), "not quiet: {err}");
}

#[test]
fn b15_plugin_run_into_a_closed_pipe_exits_quietly() {
    hostile();
    let w = util::World::new("", "");
    let wasm = util::guest("hostile");
    for json in [false, true] {
        let mut args = vec![
            "--config",
            w.config.to_str().unwrap(),
            "plugin",
            "run",
            wasm.to_str().unwrap(),
            "-c",
            "mode=ok",
            "-c",
            "count=50",
        ];
        if json {
            args.push("--json");
        }
        assert_quiet_exit(&privy_into_closed_pipe(&args), 0);
    }
    // Other commands that print: the same.
    for args in [
        vec!["config", "check"],
        vec!["plugin", "list"],
        vec!["plugin", "check", wasm.to_str().unwrap()],
    ] {
        let args = [&["--config", w.config.to_str().unwrap()][..], &args].concat();
        assert_quiet_exit(&privy_into_closed_pipe(&args), 0);
    }
}

#[test]
fn b15_scan_into_a_closed_pipe_exits_quietly_with_its_status() {
    let d = tempfile::tempdir().unwrap();
    let secret = util::secret("b15");
    let target = d.path().join("image");
    std::fs::create_dir(&target).unwrap();
    for i in 0..20 {
        std::fs::write(target.join(format!("leak{i}")), &secret).unwrap();
    }
    let key = d.path().join("key");
    std::fs::write(&key, &secret).unwrap();
    let args = [
        "scan",
        target.to_str().unwrap(),
        "--secret-file",
        key.to_str().unwrap(),
    ];
    // A leak is still exit 1 (a `set -o pipefail` script must see it).
    assert_quiet_exit(&privy_into_closed_pipe(&args), 1);
    let json = [&args[..], &["--format", "json"]].concat();
    assert_quiet_exit(&privy_into_closed_pipe(&json), 1);
    // And a real `| head -1` reads the first line and leaves.
    let line = format!(
        "{} scan {} --secret-file {} | head -1; echo \"status=${{PIPESTATUS[0]}}\"",
        util::PRIVY,
        target.display(),
        key.display()
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &line])
        .output()
        .unwrap();
    let stdout = util::text(&out.stdout);
    assert!(stdout.contains("status=1"), "{stdout}");
    assert!(!util::text(&out.stderr).contains("panicked"));
}

#[test]
fn l5_a_source_never_sees_another_sources_files() {
    // Two sources in one gather, each granted its own directory; the
    // hostile one asks for the other's file by its path.
    let w = util::World::new("", "");
    let theirs = util::secret("theirs");
    let victim = w.put("secret.key", &theirs, 0o644);
    let mine = tempfile::tempdir().unwrap();
    let cfg = privy::config::Config::load(&w.config, true).unwrap();
    let req =
        privy::request::Request::synthetic("c", privy::request::Stage::Run, Default::default());
    let wasm: std::sync::Arc<[u8]> = std::fs::read(util::guest("hostile")).unwrap().into();
    let hostile = |required: bool| privy::config::SourceConfig {
        name: "hostile".into(),
        plugin: PluginRef::Inline(wasm.clone()),
        required,
        refresh: None,
        when: None,
        grant: Grant {
            dirs: vec![mine.path().to_owned()],
            ..Grant::default()
        },
        config: [
            ("mode".to_string(), "read-path".to_string()),
            ("path".to_string(), victim.display().to_string()),
        ]
        .into(),
    };
    let plan = |required: bool| {
        let mut p = privy::plan::plan(&cfg, &req);
        assert_eq!(p.len(), 1, "the world's host-dir source");
        p.push(privy::plan::plan_source(&hostile(required), &cfg.limits));
        p
    };
    // Required: the other source's file does not exist for it.
    let e = privy::gather::gather_planned(&cfg, plan(true), &req)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("source \"hostile\": denied: read ") && e.contains("No such file"),
        "{e}"
    );
    assert!(!e.contains(&String::from_utf8_lossy(&theirs).to_string()));
    // Optional: skipped, and the other source's file comes back untouched,
    // from it alone.
    let got = privy::gather::gather_planned(&cfg, plan(false), &req).unwrap();
    let files: Vec<(&str, &str, &[u8])> = got
        .checked
        .files
        .iter()
        .map(|f| (f.source.as_str(), f.path.as_str(), f.data.expose()))
        .collect();
    assert_eq!(files, [("host-dir", "secret.key", &theirs[..])]);
}
