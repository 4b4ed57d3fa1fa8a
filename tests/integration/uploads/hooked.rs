//! `privy run` never fails silently: it refuses an engine that will not
//! run privy's hook (with the command that fixes it), and says so, exiting
//! non-zero, when the container started and no hook claimed its ticket.

use super::*;

/// Live tickets the daemon at `socket` holds (`GET /v1/health`).
pub fn live_tickets(socket: &Path) -> u64 {
    let o = Command::new("curl")
        .args(["-s", "--unix-socket", socket.to_str().unwrap()])
        .arg("http://privy/v1/health")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["tickets"].as_u64().unwrap()
}

#[test]
fn b13_run_refuses_podman_that_reads_no_privy_hook() {
    if !podman_ready() {
        return;
    }
    let st = Setup::new("");
    let _d = st.daemon();
    // containers.conf names an empty hooks.d: podman would run no hook.
    let empty = tempfile::tempdir().unwrap();
    let conf = st.w.dir.path().join("containers.conf");
    std::fs::write(
        &conf,
        format!(
            "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n[engine]\nhooks_dir = [{:?}]\n",
            empty.path()
        ),
    )
    .unwrap();
    let secret = util::secret("unhooked");
    let src = st.user_file("k", &secret, 0o600);
    let run = |extra: &[&str]| {
        let mut args = s(&["run", "-p", &format!("{}:k", src.display()), "--", "podman"]);
        args.extend(s(extra));
        args.extend(s(&["run", "--rm", podman_image(), "cat", "/run/private/k"]));
        util::output_with_stdin(
            Command::new("timeout")
                .arg("120")
                .arg(util::PRIVY)
                .args(["--config", st.w.config.to_str().unwrap()])
                .args(&args)
                .env("HOME", st.home())
                .env("CONTAINERS_CONF", &conf),
            b"",
        )
    };
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let e = text(&o.stderr);
    assert!(
        e.contains("podman will not run privy's hook")
            && e.contains(&format!(
                "containers.conf's hooks_dir {}",
                empty.path().display()
            ))
            && e.contains(&format!(
                "privy install --hooks-dir {}",
                empty.path().display()
            )),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(o.stdout.is_empty(), "the container must not have run");
    assert_eq!(live_tickets(&st.socket), 0, "nothing was uploaded");
    // The fix it names works.
    let o =
        st.w.privy(&["install", "--hooks-dir", empty.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = run(&["--runtime", "crun"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(o.stdout, secret);
}

#[test]
fn b13_run_says_so_and_fails_when_no_hook_claimed_the_ticket() {
    if !util::e2e_ready("runc") {
        return;
    }
    let st = Setup::new("");
    let _d = st.daemon();
    let src = st.user_file("k", b"never-read", 0o600);
    // A bundle without privy's hooks, run without `--bundle`: runc starts
    // the container and nothing claims the ticket.
    let b = Bundle::new("cat /run/private/k 2>/dev/null; exit 0");
    let o = st.privy(&s(&[
        "run",
        "-p",
        &format!("{}:k", src.display()),
        "--",
        "runc",
        "run",
        "-b",
        b.path().to_str().unwrap(),
        &b.id,
    ]));
    let _ = Command::new("runc").args(["delete", "-f", &b.id]).output();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let e = text(&o.stderr);
    assert!(
        e.lines().last().unwrap().starts_with(
            "privy: no hook claimed the ticket: runc started the container without privy's hook"
        ),
        "{e}"
    );
    // The upload did not stay behind until its TTL.
    assert_eq!(live_tickets(&st.socket), 0);
    // The same container with privy's hooks: claimed, exit 0, no line.
    let b = Bundle::new("cat /run/private/k");
    let o = st.privy(&s(&[
        "run",
        "-p",
        &format!("{}:k", src.display()),
        "--bundle",
        b.path().to_str().unwrap(),
        "--",
        "runc",
        "run",
        "-b",
        b.path().to_str().unwrap(),
        &b.id,
    ]));
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(o.stdout, b"never-read");
    assert!(!text(&o.stderr).contains("claimed"), "{}", text(&o.stderr));
}

/// podman reads a privy entry, but its `when` never matches this
/// container (a stale or narrowed entry): the check before the start
/// passes, no hook claims the ticket, and privy run says so, exit 1.
#[test]
fn b13_podman_whose_privy_entry_does_not_apply_is_caught_after_start() {
    let Some((st, _d)) = Setup::for_podman() else {
        return;
    };
    for f in privy::contract::HOOKS_D_FILES {
        let p = st.hooks.join(f);
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        v["when"] = serde_json::json!({"annotations": {"^io\\.example\\.never$": ".*"}});
        std::fs::write(&p, v.to_string()).unwrap();
    }
    let src = st.user_file("k", b"unread", 0o600);
    let mut args = s(&["run", "-p", &format!("{}:k", src.display()), "--"]);
    args.extend(st.podman(
        "crun",
        &[
            "run",
            "--rm",
            podman_image(),
            "sh",
            "-c",
            "cat /run/private/k 2>/dev/null; exit 0",
        ],
    ));
    let o = st.privy(&args);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let e = text(&o.stderr);
    assert!(
        e.contains(
            "privy: no hook claimed the ticket: podman started the container without privy's hook"
        ),
        "{e}"
    );
    assert!(o.stdout.is_empty());
    assert_eq!(live_tickets(&st.socket), 0);
}
