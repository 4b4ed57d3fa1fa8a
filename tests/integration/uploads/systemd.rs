//! The daemon's systemd units: hardened, socket-activated.

use super::*;

#[test]
fn systemd_units_are_hardened_and_socket_activation_works() {
    let w = World::new("", "");
    let units = w.dir.path().join("units");
    let bin = util::privy_canonical();
    let o = w.privy(&[
        "install",
        "--systemd",
        "--unit-dir",
        units.to_str().unwrap(),
        "--binary",
        &bin,
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let service = std::fs::read_to_string(units.join("privy.service")).unwrap();
    for line in [
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "LimitCORE=0",
        "LimitMEMLOCK=infinity",
        "MemorySwapMax=0",
        &format!("ExecStart={bin} --config {} daemon", w.config.display()),
    ] {
        assert!(service.lines().any(|l| l == line), "missing {line}");
    }
    // The agent runs WebAssembly: wasmtime maps compiled code executable,
    // which MemoryDenyWriteExecute= would forbid.
    assert!(!service.contains("MemoryDenyWriteExecute=yes"), "{service}");
    let socket = std::fs::read_to_string(units.join("privy.socket")).unwrap();
    assert!(socket.contains("ListenStream=/run/privy/privy.sock"));
    if let Some(analyze) = util::which("systemd-analyze") {
        let o = Command::new(analyze)
            .arg("verify")
            .arg(units.join("privy.socket"))
            .arg(units.join("privy.service"))
            .output()
            .unwrap();
        let e = text(&o.stderr);
        assert!(
            !e.contains("Unknown key") && !e.contains("Unknown lvalue"),
            "{e}"
        );
    }
    // Socket activation: the daemon serves the socket systemd hands it.
    let Some(activate) = util::which("systemd-socket-activate") else {
        eprintln!("SKIP: systemd-socket-activate is not installed; socket activation not tried");
        return;
    };
    let sock = w.dir.path().join("activated.sock");
    let mut child = Command::new(activate)
        .arg("-l")
        .arg(&sock)
        .args([
            util::PRIVY,
            "--config",
            w.config.to_str().unwrap(),
            "daemon",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("activation socket", 20, || sock.exists());
    let o = Command::new("curl")
        .args([
            "-s",
            "--unix-socket",
            sock.to_str().unwrap(),
            "http://privy/v1/health",
        ])
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        text(&o.stdout).contains("\"ok\":true"),
        "{}",
        text(&o.stdout)
    );
    // Uninstall removes both.
    assert!(w
        .privy(&[
            "install",
            "--systemd",
            "--unit-dir",
            units.to_str().unwrap(),
            "--uninstall"
        ])
        .status
        .success());
    assert!(!units.join("privy.service").exists() && !units.join("privy.socket").exists());
}

/// The number after `key:` in `/proc/PID/status` (`VmLck:  1234 kB`).
fn status_kib(pid: u32, key: &str) -> u64 {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    st.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn l1_daemon_memory_is_locked_and_dumps_no_core() {
    if !util::is_root() {
        eprintln!("SKIP: locking memory needs root (CAP_IPC_LOCK)");
        assert!(
            std::env::var("PRIVY_E2E_REQUIRED").as_deref() != Ok("1"),
            "PRIVY_E2E_REQUIRED=1 but not root"
        );
        return;
    }
    let st = Setup::new("");
    let d = st.daemon();
    let pid = d.pid();
    // Uploads never reach swap: every page of the daemon is locked.
    let locked = status_kib(pid, "VmLck");
    assert!(locked > 0, "the daemon's memory is not locked (VmLck 0)");
    // No core file, whatever happens to it.
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("core limit");
    let v: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(
        (v[4], v[5]),
        ("0", "0"),
        "the daemon could write a core dump: {core}"
    );
}
