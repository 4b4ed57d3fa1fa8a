//! Hostile guests (built from `plugins/hostile` by the build) against the
//! real plugin host: each misbehaviour is contained within its limit with
//! a clear error, and the host keeps working afterwards (L5, L6).

use privy::check::{check, CheckError};
use privy::config::{Grant, Limits};
use privy::fetch::Fetched;
use privy::plan::Precedence;
use privy::plugin::{Plugin, PluginError, PluginHost, RawFile};
use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::util;

fn host() -> &'static PluginHost {
    util::plugin_host()
}

fn hostile() -> &'static Plugin {
    static C: OnceLock<Plugin> = OnceLock::new();
    C.get_or_init(|| {
        host()
            .load_bytes(&std::fs::read(util::guest("hostile")).unwrap())
            .unwrap()
    })
}

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
        }],
        &Limits::default(),
    )
    .map(|_| ())
}

#[test]
fn endless_loop_is_stopped_by_the_cpu_limit() {
    let e = run("spin").unwrap_err();
    assert!(matches!(e, PluginError::Cpu(300)), "{e}");
    assert_eq!(e.to_string(), "CPU limit of 300 ms exceeded");
    host_still_healthy();
}

#[test]
fn memory_bomb_is_stopped_by_the_memory_limit() {
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
fn read_outside_the_grant_fails() {
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
