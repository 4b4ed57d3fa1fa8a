//! The `privy` binary: one-line errors that name the cause, nothing lost,
//! and install refusing to fail open.

use crate::util::{self, privy_with_stdin, text, World};

#[test]
fn malformed_config_gives_one_line_naming_the_key() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("privy.toml");
    std::fs::write(
        &cfg,
        "[[source]]\nname = \"x\"\nplugin = \"host-dir\"\ngrant.dirs = [\"relative\"]\n",
    )
    .unwrap();
    let out = privy_with_stdin(&["--config", cfg.to_str().unwrap(), "config", "check"], b"");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("`source[0].grant.dirs[0]`"), "{err}");
}

#[test]
fn toml_syntax_error_names_the_file() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("bad.toml");
    std::fs::write(&cfg, "target = [\n").unwrap();
    let out = privy_with_stdin(&["--config", cfg.to_str().unwrap(), "config", "check"], b"");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("bad.toml"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn explicit_missing_config_is_an_error_not_the_default() {
    let out = privy_with_stdin(
        &["--config", "/nonexistent/privy.toml", "config", "check"],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/nonexistent/privy.toml"));
}

#[test]
fn config_check_prints_effective_config_without_values() {
    let w = World::new("", "[source.config]\ntoken = \"do-not-print-me\"\n");
    let out = w.privy(&["config", "check"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    assert!(
        o.contains("target = \"/run/private\"") && o.contains("max_files = 1024"),
        "{o}"
    );
    assert!(
        o.contains("token = \"<set>\"") && !o.contains("do-not-print-me"),
        "{o}"
    );
}

#[test]
fn wasm_plugin_with_wrong_digest_is_refused() {
    let hostile = util::guest("hostile");
    let w = World::new(
        "",
        &format!(
            "[[source]]\nname = \"h\"\nplugin = {:?}\nsha256 = \"{}\"\n",
            hostile,
            "0".repeat(64)
        ),
    );
    let out = w.privy(&["config", "check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("source \"h\"")
            && (err.contains("digest mismatch") || err.contains("owned by root")),
        "{err}"
    );
}

#[test]
fn hooks_dir_install_refuses_a_missing_binary_and_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let hooks = d.path().join("hooks.d");
    let out = privy_with_stdin(
        &[
            "install",
            "--hooks-dir",
            hooks.to_str().unwrap(),
            "--binary",
            "/nonexistent/privy",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("skipped silently"),
        "{}",
        text(&out.stderr)
    );
    assert!(!hooks.exists() || std::fs::read_dir(&hooks).unwrap().next().is_none());
}

#[test]
fn hooks_dir_install_and_uninstall() {
    let w = World::new("", "");
    let hooks = w.dir.path().join("hooks.d");
    let out = w.privy(&["install", "--hooks-dir", hooks.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(hooks.join("privy-create-runtime.json")).unwrap())
            .unwrap();
    assert_eq!(v["hook"]["path"], util::privy_canonical());
    assert_eq!(v["stages"][0], "createRuntime");
    let out = w.privy(&[
        "install",
        "--hooks-dir",
        hooks.to_str().unwrap(),
        "--uninstall",
    ]);
    assert!(out.status.success());
    assert_eq!(std::fs::read_dir(&hooks).unwrap().count(), 0);
}

#[test]
fn hook_with_garbage_state_fails_with_one_line() {
    let w = World::new("", "");
    let out = privy_with_stdin(
        &[
            "--config",
            w.config.to_str().unwrap(),
            "hook",
            "create-runtime",
        ],
        b"{not json",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("privy: OCI state on stdin:"), "{err}");
    assert_eq!(err.lines().count(), 1);
}
