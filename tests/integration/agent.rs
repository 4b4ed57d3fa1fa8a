//! The node agent and the thin hook (issue 12), end to end on runc, crun
//! and podman: `privy-hook` served by a warm `privy daemon`; without one
//! (the pipeline in process, noted once); an agent that is stopped
//! (SIGSTOP), killed (SIGKILL), restarted or dies mid-answer never lets a
//! container start with part of its files or without a required source;
//! reload on config change, SIGHUP and a plugin file whose pin went stale;
//! who the agent serves.

use crate::uploads::Setup;
use crate::util::{self, sha256_hex, text, Bundle};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

on_both_runtimes!(
    the_thin_hook_is_served_by_the_agent,
    without_an_agent_the_thin_hook_runs_in_process_and_says_so_once,
    nothing_to_inject_never_touches_the_agent_socket,
    a_stopped_agent_is_named_and_only_uploads_fail_closed,
    a_killed_or_restarted_agent_never_lets_a_required_source_be_skipped,
    an_agent_that_dies_mid_answer_leaves_no_partial_files,
    an_agent_answer_naming_a_path_outside_is_never_used,
    a_changed_config_or_plugin_is_served_without_a_restart,
);

fn daemon_log(st: &Setup) -> String {
    text(&std::fs::read(st.w.dir.path().join("daemon.log")).unwrap_or_default())
}

fn privy_log(st: &Setup) -> String {
    text(&st.w.log())
}

/// A bundle whose hooks are privy's (the thin hook, as install writes them).
fn bundle(st: &Setup, script: &str) -> Bundle {
    let b = Bundle::new(script);
    b.install(&st.w);
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(
        spec["hooks"]["createRuntime"][0]["path"],
        util::privy_hook_canonical(),
        "install must point the runtimes at the thin hook"
    );
    b
}

fn with_ticket(b: &Bundle, ticket: &str) {
    b.edit(|v| v["annotations"] = serde_json::json!({ "io.privy.ticket": ticket }));
}

/// Upload one file to the running agent; its ticket.
fn upload(st: &Setup, secret: &[u8]) -> String {
    let src = st.user_file("up", secret, 0o600);
    let out = st.privy(&[
        "upload".into(),
        "--ttl".into(),
        "600".into(),
        "-p".into(),
        format!("{}:up/x", src.display()),
    ]);
    assert!(out.status.success(), "upload: {}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
}

fn the_thin_hook_is_served_by_the_agent(rt: &str) {
    let st = Setup::new("");
    let secret = util::secret("served");
    st.w.put("a.key", &secret, 0o600);
    let _d = st.daemon();
    let b = bundle(&st, "sha256sum /run/private/a.key");
    let out = b.run(rt);
    assert!(out.status.success(), "{rt}: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&sha256_hex(&secret)));
    let dl = daemon_log(&st);
    assert!(
        dl.contains("agent: served a hook") && dl.contains(&b.id),
        "the agent must have served this container: {dl}"
    );
    let log = privy_log(&st);
    assert!(log.contains("\"injected\""), "the hook audits: {log}");
    assert!(!log.contains("no privy agent"), "{log}");
    util::assert_no_trace(&st.w, &b, &[&out], &[&secret]);
}

fn without_an_agent_the_thin_hook_runs_in_process_and_says_so_once(rt: &str) {
    let st = Setup::new("");
    let secret = util::secret("in-process");
    st.w.put("a.key", &secret, 0o600);
    let note = "no privy agent answers on its socket";
    for _ in 0..2 {
        let b = bundle(&st, "sha256sum /run/private/a.key");
        let out = b.run(rt);
        assert!(out.status.success(), "{rt}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains(&sha256_hex(&secret)));
    }
    assert_eq!(privy_log(&st).matches(note).count(), 1, "noted once");
    // The agent comes: served; it goes again: noted again, once.
    let mut d = st.daemon();
    let b = bundle(&st, "sha256sum /run/private/a.key");
    assert!(b.run(rt).status.success());
    assert!(daemon_log(&st).contains(&b.id));
    d.stop();
    for _ in 0..2 {
        let b = bundle(&st, "sha256sum /run/private/a.key");
        let out = b.run(rt);
        assert!(out.status.success(), "{rt}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains(&sha256_hex(&secret)));
    }
    assert_eq!(privy_log(&st).matches(note).count(), 2, "noted again, once");
}

fn nothing_to_inject_never_touches_the_agent_socket(rt: &str) {
    let st = Setup::new("");
    // Only an annotated container gets anything.
    let cfg = std::fs::read_to_string(&st.w.config).unwrap().replace(
        "name = \"host-dir\"",
        "name = \"host-dir\"\nwhen.annotation = \"io.example.wants\"",
    );
    std::fs::write(&st.w.config, cfg).unwrap();
    st.w.put("a.key", b"not for this one", 0o600);
    // A listener that never accepts: a hook that connected would be seen.
    let listener = std::os::unix::net::UnixListener::bind(&st.socket).unwrap();
    listener.set_nonblocking(true).unwrap();
    let b = bundle(&st, "ls /run/private 2>&1; true");
    let out = b.run(rt);
    assert!(out.status.success(), "{rt}: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("No such file"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        listener.accept().map(drop).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "a container nothing applies to must not contact the agent"
    );
    // Control: a connection would have been seen.
    let _c = std::os::unix::net::UnixStream::connect(&st.socket).unwrap();
    assert!(listener.accept().is_ok());
}

fn a_stopped_agent_is_named_and_only_uploads_fail_closed(rt: &str) {
    let st = Setup::with_daemon_keys("", "hook_budget_ms = 300");
    let secret = util::secret("stopped");
    st.w.put("a.key", &secret, 0o600);
    let d = st.daemon();
    let up = util::secret("stopped-upload");
    let ticket = upload(&st, &up);
    signal(d.pid(), nix::sys::signal::Signal::SIGSTOP);
    let waited = format!(
        "privy daemon at {} did not answer within 0.3 s",
        st.socket.display()
    );
    // Configured sources: run in the hook's own process, and said so.
    let a = bundle(&st, "sha256sum /run/private/a.key");
    let out = a.run(rt);
    assert!(out.status.success(), "{rt}: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&sha256_hex(&secret)));
    let log = privy_log(&st);
    assert!(
        log.contains(&waited)
            && log.contains("running the configured sources in the hook's own process"),
        "{log}"
    );
    // An upload: only the agent holds it; the container must not start.
    let b = bundle(&st, "cat /run/private/up/x; sha256sum /run/private/a.key");
    with_ticket(&b, &ticket);
    let out = b.run(rt);
    signal(d.pid(), nix::sys::signal::Signal::SIGCONT);
    assert!(!out.status.success(), "{rt}: started without its upload");
    let err = text(&out.stderr);
    assert!(
        err.contains(&waited) && err.contains("must not start without it"),
        "{err}"
    );
    assert!(!util::contains(&out.stdout, &secret));
    util::assert_no_trace(&st.w, &b, &[&out], &[&up, &secret]);
}

fn a_killed_or_restarted_agent_never_lets_a_required_source_be_skipped(rt: &str) {
    let st = Setup::new("");
    let secret = util::secret("killed");
    st.w.put("a.key", &secret, 0o600);
    let mut d = st.daemon();
    let up = util::secret("killed-upload");
    let ticket = upload(&st, &up);
    d.kill();
    // The socket file is left behind: connection refused, in process.
    let a = bundle(&st, "sha256sum /run/private/a.key");
    let out = a.run(rt);
    assert!(out.status.success(), "{rt}: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&sha256_hex(&secret)));
    let b = bundle(&st, "cat /run/private/up/x");
    with_ticket(&b, &ticket);
    let out = b.run(rt);
    assert!(!out.status.success(), "{rt}: started without its upload");
    assert!(
        text(&out.stderr).contains("privy daemon is not running"),
        "{}",
        text(&out.stderr)
    );
    // Restarted: serves again; the upload died with the old process.
    let _d = st.daemon();
    let a = bundle(&st, "sha256sum /run/private/a.key");
    let out = a.run(rt);
    assert!(out.status.success(), "{rt}: {}", text(&out.stderr));
    assert!(daemon_log(&st).contains(&a.id), "served by the new agent");
    let out = b.run(rt);
    assert!(!out.status.success(), "{rt}: started without its upload");
    assert!(
        text(&out.stderr).contains("unknown ticket"),
        "{}",
        text(&out.stderr)
    );
    util::assert_no_trace(&st.w, &b, &[&out], &[&up, &secret]);
}

/// A fake agent that accepts, reads one request, answers half of a 200
/// with a file called `a.key` that holds `PARTIAL`, and hangs up: what a
/// client sees when the agent is killed while it answers.
fn half_answering_agent(socket: &Path) {
    fake_agent(
        socket,
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n{\"files\":[{\"path\":\"a.key\",\"source\":\"host-dir\",\"mode\":256,\"data\":\"UEFSVElBTA==\"}",
    );
}

/// The expiry in the agent's answer, in both directions of a version skew:
/// a newer agent's `expires` member reaches the hook; an older agent's
/// answer without one means no expiry (and an older hook, whose parser
/// ignores members it does not know, reads a newer answer as before).
#[test]
fn the_hook_reads_the_expiry_in_an_agents_answer_and_none_from_an_older_agent() {
    let d = tempfile::tempdir().unwrap();
    let body = |expires: &str| {
        let b = format!(
            "{{\"files\":[{{\"path\":\"a.key\",\"source\":\"s\",\"mode\":256,\"data\":\"eA==\"}}],\"overrides\":[],\"dropped\":[]{expires}}}"
        );
        let http = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        );
        &*Box::leak(http.into_bytes().into_boxed_slice())
    };
    for (name, member, want) in [
        ("new.sock", ",\"expires\":1800000000", Some(1_800_000_000)),
        ("old.sock", "", None),
    ] {
        let socket = d.path().join(name);
        fake_agent(&socket, body(member));
        let c = privy::daemon::client::Client::new(&socket, Duration::from_secs(10));
        let got = c.hook(b"{}", None, None).unwrap();
        assert_eq!(got.files.len(), 1, "{name}");
        assert_eq!(got.expires, want, "{name}");
    }
}

/// A fake agent that answers every request with `answer`, then hangs up.
fn fake_agent(socket: &Path, answer: &'static [u8]) {
    let l = std::os::unix::net::UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if got.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            let _ = s.write_all(answer);
        }
    });
}

fn an_agent_that_dies_mid_answer_leaves_no_partial_files(rt: &str) {
    let st = Setup::with_daemon_keys("", "hook_budget_ms = 2000");
    let secret = util::secret("mid-answer");
    st.w.put("a.key", &secret, 0o600);
    half_answering_agent(&st.socket);
    // Configured sources: the whole set, from the hook's own process.
    let a = bundle(&st, "cat /run/private/a.key");
    let out = a.run(rt);
    assert!(out.status.success(), "{rt}: {}", text(&out.stderr));
    assert_eq!(out.stdout, secret, "the full file, never the half answer");
    assert!(privy_log(&st).contains("running the configured sources in the hook's own process"));
    // With an upload: fails closed, nothing mounted.
    let b = bundle(&st, "cat /run/private/a.key");
    with_ticket(&b, &format!("pvt_{}", "ab".repeat(24)));
    let out = b.run(rt);
    assert!(!out.status.success(), "{rt}: started without its upload");
    assert!(!util::contains(&out.stdout, b"PARTIAL"));
    assert!(
        text(&out.stderr).contains("must not start without it"),
        "{}",
        text(&out.stderr)
    );
}

fn a_changed_config_or_plugin_is_served_without_a_restart(rt: &str) {
    let st = Setup::new("");
    st.w.put("a.key", &util::secret("a"), 0o600);
    let d = st.daemon();
    let more = st.w.dir.path().join("more.d");
    std::fs::create_dir_all(&more).unwrap();
    let b_secret = util::secret("b");
    std::fs::write(more.join("b.key"), &b_secret).unwrap();
    // A source from a pinned plugin file, for annotated containers only.
    let wasm = st.w.dir.path().join("pinned.wasm");
    std::fs::copy(util::guest("host_dir"), &wasm).unwrap();
    let pin = util::sha256_file(&wasm);
    st.w.append_config(&format!(
        "[[source]]\nname = \"more\"\nplugin = {wasm:?}\nsha256 = {pin:?}\nwhen.annotation = \"io.example.more\"\ngrant.dirs = [{more:?}]\nconfig.dir = {more:?}\n"
    ));
    let annotated =
        |b: &Bundle| b.edit(|v| v["annotations"] = serde_json::json!({ "io.example.more": "1" }));
    let b = bundle(&st, "sha256sum /run/private/b.key");
    annotated(&b);
    let out = b.run(rt);
    assert!(
        out.status.success(),
        "{rt}: {}\n{}\n{}",
        text(&out.stderr),
        daemon_log(&st),
        privy_log(&st)
    );
    assert!(text(&out.stdout).contains(&sha256_hex(&b_secret)));
    assert!(daemon_log(&st).contains("agent: config reloaded"));
    // The plugin file changes under its pin: that source fails closed with
    // one line; the others keep working.
    // (Bundles first: `privy install` itself refuses a stale pin.)
    let b = bundle(&st, "sha256sum /run/private/b.key");
    annotated(&b);
    let a = bundle(&st, "test -f /run/private/a.key && echo A");
    std::fs::copy(util::guest("upload"), &wasm).unwrap();
    let out = b.run(rt);
    assert!(!out.status.success(), "{rt}: a stale pin must fail closed");
    // (runc quotes the hook's stderr with escapes.)
    let err = text(&out.stderr).replace("\\\"", "\"");
    assert!(
        err.contains("source \"more\"") && err.contains("plugin digest mismatch"),
        "{err}"
    );
    let out = a.run(rt);
    assert!(out.status.success(), "{rt}: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "A");
    // SIGHUP reloads everything.
    signal(d.pid(), nix::sys::signal::Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon_log(&st).contains("SIGHUP: reloading") {
        assert!(Instant::now() < deadline, "{}", daemon_log(&st));
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_agent_serves_a_container_pid_only_and_a_user_only_its_own_container() {
    if !util::e2e_ready("runc") {
        return;
    }
    let st = Setup::new("");
    let _d = st.daemon();
    let b = Bundle::new("true");
    // A pid in the caller's own mount namespace (this test's) is not a
    // container being created.
    let state = serde_json::json!({
        "ociVersion": "1.0.2", "id": "not-a-container", "status": "creating",
        "pid": std::process::id(), "bundle": b.path(),
    })
    .to_string();
    let c = privy::daemon::client::Client::new(&st.socket, Duration::from_secs(10));
    let e = c
        .hook(state.as_bytes(), None, Some(&st.w.config))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("shares the asking process's mount namespace"),
        "{e}"
    );
    // A hook planning with another config file is sent back to run it itself.
    match c.hook(state.as_bytes(), None, Some(Path::new("/etc/other.toml"))) {
        Err(privy::daemon::client::ClientError::Api {
            status: 421,
            message,
        }) => {
            assert!(message.contains("/etc/other.toml"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // A user naming a process that is not its own container (root's, here
    // this test's child in a mount namespace of its own) is refused before
    // anything is read or planned.
    let mut other = Command::new("unshare")
        .args(["-m", "sleep", "30"])
        .spawn()
        .unwrap();
    let theirs = serde_json::json!({
        "ociVersion": "1.0.2", "id": "not-theirs", "status": "creating",
        "pid": other.id(), "bundle": b.path(),
    })
    .to_string();
    let as_nobody = |state: &str| {
        let body = serde_json::json!({ "state": state }).to_string();
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .args([
                "curl",
                "-s",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                "--unix-socket",
            ])
            .arg(&st.socket)
            .args(["-X", "POST", "--data-binary", &body, "http://privy/v1/hook"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        text(&out.stdout)
    };
    let so = as_nobody(&theirs);
    let _ = other.kill();
    let _ = other.wait();
    assert!(so.ends_with("\n403"), "{so}");
    assert!(so.contains("is not the caller's container"), "{so}");
    let so = as_nobody(&state.replace(&format!("\"pid\":{}", std::process::id()), "\"pid\":1"));
    assert!(
        so.ends_with("\n403") && so.contains("is not the caller's container"),
        "{so}"
    );
}

/// Which of `needles` occur in the file at `path`, read in 1 MiB pieces (a
/// debug `privy` is hundreds of MiB: read whole, it would raise this test
/// process's RSS, which every process it spawns afterwards inherits as its
/// own peak, and the scanner's memory tests read that peak).
fn file_contains(path: &str, needles: &[&str]) -> Vec<bool> {
    let mut f = std::fs::File::open(path).unwrap();
    let keep = needles.iter().map(|n| n.len()).max().unwrap_or(0);
    let mut found = vec![false; needles.len()];
    let mut buf = vec![0u8; 1 << 20];
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            return found;
        }
        carry.extend_from_slice(&buf[..n]);
        for (i, needle) in needles.iter().enumerate() {
            if !found[i] {
                found[i] = memchr::memmem::find(&carry, needle.as_bytes()).is_some();
            }
        }
        let cut = carry.len().saturating_sub(keep);
        carry.drain(..cut);
    }
}

#[test]
fn privy_hook_links_no_wasm_engine_async_runtime_or_tls() {
    let heavy = ["wasmtime", "cranelift", "tokio", "rustls", "hyper", "clap"];
    let control = file_contains(util::PRIVY, &heavy);
    let hook = file_contains(util::PRIVY_HOOK, &heavy);
    for (i, name) in heavy.iter().enumerate() {
        assert!(control[i], "control: privy names {name}");
        assert!(!hook[i], "privy-hook must not link {name}");
    }
}

/// podman with privy's hooks.d (the thin hook): with and without an
/// agent, a stopped agent, a killed one.
#[test]
fn podman_runs_the_thin_hook_with_and_without_an_agent() {
    if !util::e2e_ready("podman") {
        return;
    }
    // A budget a debug agent meets under load while it serves; cut to
    // 300 ms below, before it is stopped.
    let st = Setup::with_daemon_keys("", "hook_budget_ms = 5000");
    st.install_hooks();
    let secret = util::secret("podman-agent");
    st.w.put("a.key", &secret, 0o600);
    let image = util::busybox_image();
    let run = |rt: &str, extra: &[&str]| {
        let mut args = st.podman(rt, &["run", "--rm"]);
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend([
            image.to_string(),
            "sha256sum".into(),
            "/run/private/a.key".into(),
        ]);
        Command::new(&args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let want = sha256_hex(&secret);
    for rt in ["crun", "runc"] {
        // No agent.
        let out = run(rt, &[]);
        assert!(out.status.success(), "{rt}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains(&want), "{rt}");
    }
    let mut d = st.daemon();
    for rt in ["crun", "runc"] {
        let out = run(rt, &[]);
        assert!(out.status.success(), "{rt}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains(&want), "{rt}");
    }
    assert_eq!(
        daemon_log(&st).matches("agent: served a hook").count(),
        2,
        "{}",
        daemon_log(&st)
    );
    // Stopped: configured sources in process; an upload fails closed.
    let up = util::secret("podman-agent-up");
    let ticket = upload(&st, &up);
    let cfg = std::fs::read_to_string(&st.w.config).unwrap();
    std::fs::write(
        &st.w.config,
        cfg.replace("hook_budget_ms = 5000", "hook_budget_ms = 300"),
    )
    .unwrap();
    signal(d.pid(), nix::sys::signal::Signal::SIGSTOP);
    let annotation = format!("io.privy.ticket={ticket}");
    for rt in ["crun", "runc"] {
        let out = run(rt, &[]);
        assert!(out.status.success(), "{rt}: {}", text(&out.stderr));
        let out = run(rt, &["--annotation", &annotation]);
        assert!(!out.status.success(), "{rt}: started without its upload");
        assert!(!util::contains(&out.stdout, &secret));
    }
    signal(d.pid(), nix::sys::signal::Signal::SIGCONT);
    // Killed: the same.
    d.kill();
    for rt in ["crun", "runc"] {
        let out = run(rt, &[]);
        assert!(out.status.success(), "{rt}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains(&want), "{rt}");
        let out = run(rt, &["--annotation", &annotation]);
        assert!(!out.status.success(), "{rt}: started without its upload");
    }
}

fn an_agent_answer_naming_a_path_outside_is_never_used(rt: &str) {
    let st = Setup::new("");
    let secret = util::secret("outside");
    st.w.put("a.key", &secret, 0o600);
    // A whole, well-formed answer whose file would land outside the target.
    fake_agent(
        &st.socket,
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 78\r\n\r\n{\"files\":[{\"path\":\"../../escaped\",\"source\":\"x\",\"mode\":256,\"data\":\"RVZJTA==\"}]}",
    );
    let a = bundle(&st, "cat /run/private/a.key; ls /run /escaped 2>&1; true");
    let out = a.run(rt);
    assert!(out.status.success(), "{rt}: {}", text(&out.stderr));
    let so = text(&out.stdout);
    assert!(so.starts_with(&text(&secret)), "{so}");
    assert!(so.contains("No such file"), "nothing escaped: {so}");
    assert!(!util::contains(&out.stdout, b"EVIL"));
    assert!(
        privy_log(&st).contains("answered something that is not its API"),
        "{}",
        privy_log(&st)
    );
    assert!(!a.rootfs().join("escaped").exists() && !a.rootfs().join("run/escaped").exists());
}
