//! Tickets are their uploader's: another uid gets nothing; concurrent runs
//! keep apart.

use super::*;

#[test]
fn l8_another_uid_can_neither_read_nor_use_nor_drop_a_ticket() {
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
