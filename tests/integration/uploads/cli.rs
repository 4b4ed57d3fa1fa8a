//! `privy run` and `privy upload` themselves: errors, exit codes, the
//! user's references.

use super::*;

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
