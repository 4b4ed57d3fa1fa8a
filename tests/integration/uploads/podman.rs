//! Uploads into podman containers on crun and runc, their lifetime, and
//! what a container with a bad ticket is told.

use super::*;

#[test]
fn l1_podman_uploads_leave_no_trace_on_disk() {
    let Some((st, _d)) = Setup::for_podman() else {
        return;
    };
    let image = podman_image();
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
    let Some((st, d)) = Setup::for_podman() else {
        return;
    };
    let image = podman_image();
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
fn l8_expired_unknown_and_dead_daemon_tickets_stop_the_container_with_the_cause() {
    let Some((st, mut d)) = Setup::for_podman() else {
        return;
    };
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
