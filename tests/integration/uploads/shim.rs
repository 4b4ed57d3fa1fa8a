//! `privy shim` as an OCI runtime wrapper, and Docker through it (a
//! dockerd of the test's own).

use super::*;

#[test]
fn shim_adds_the_hooks_then_runs_the_real_runtime() {
    if !util::e2e_ready("runc") {
        return;
    }
    let w = World::new("", "");
    let secret = util::secret("shim");
    w.put("entitlement.pem", &secret, 0o644);
    let b = Bundle::new("sha256sum /run/private/entitlement.pem > /out");
    let root = tempfile::tempdir().unwrap();
    let errlog = root.path().join("stderr");
    // As Docker calls a runtime: global flags first, then the verb.
    let shim = |args: &[&str]| {
        Command::new("timeout")
            .arg("60")
            .arg(util::PRIVY)
            .args([
                "--config",
                w.config.to_str().unwrap(),
                "shim",
                "--runtime-path",
                "runc",
                "--",
            ])
            .args([
                "--root",
                root.path().to_str().unwrap(),
                "--log-format",
                "json",
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Not a pipe: the container would inherit it and `create` would
            // wait for it to close.
            .stderr(Stdio::from(std::fs::File::create(&errlog).unwrap()))
            .status()
            .unwrap()
    };
    let o = shim(&["create", "--bundle", b.path().to_str().unwrap(), &b.id]);
    assert!(o.success(), "{}", std::fs::read_to_string(&errlog).unwrap());
    let cfg = std::fs::read_to_string(b.path().join("config.json")).unwrap();
    assert!(cfg.contains("create-runtime"), "hooks were added");
    assert!(shim(&["start", &b.id]).success());
    wait_until("container finished", 30, || {
        b.rootfs().join("out").exists() && {
            std::fs::read_to_string(b.rootfs().join("out")).is_ok_and(|s| s.contains('\n'))
        }
    });
    let _ = shim(&["delete", "-f", &b.id]);
    let out = std::fs::read_to_string(b.rootfs().join("out")).unwrap();
    assert!(out.contains(&sha256_hex(&secret)), "{out}");
    // Called as `privy-shim`, with the runtime from the environment.
    let link = root.path().join("privy-shim");
    std::os::unix::fs::symlink(util::PRIVY, &link).unwrap();
    let o = Command::new(&link)
        .arg("--version")
        .env("PRIVY_RUNTIME_PATH", "runc")
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(
        text(&o.stdout).contains("runc version"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn docker_through_the_shim_gets_host_files_and_uploads() {
    if !util::e2e_ready("runc") {
        return;
    }
    if util::which("dockerd").is_none() || util::which("docker").is_none() {
        assert!(
            std::env::var("PRIVY_E2E_REQUIRED").as_deref() != Ok("1"),
            "dockerd is not installed but PRIVY_E2E_REQUIRED=1"
        );
        eprintln!("SKIP: dockerd is not installed; Docker through privy shim not tried");
        return;
    }
    let st = Setup::new("");
    let _d = st.daemon();
    let host_secret = util::secret("docker-host");
    st.w.put("entitlement.pem", &host_secret, 0o644);
    let dk = Dockerd::start(&st.w);
    // The busybox image, imported into this dockerd.
    let root = tempfile::tempdir().unwrap();
    let tar = util::busybox_tar(root.path());
    let o = dk.docker(&["import", tar.to_str().unwrap(), "privy-bb:test"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // Host files, with no hooks dir: the shim adds the hooks.
    let o = dk.docker(&Dockerd::run_with_privy(&[
        "sha256sum",
        "/run/private/entitlement.pem",
    ]));
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains(&sha256_hex(&host_secret)));
    // A per-run upload through privy run, and the same engine.
    let up = util::secret("docker-upload");
    let src = st.user_file("k", &up, 0o600);
    let host = dk.host();
    let private = format!("{}:k", src.display());
    let docker = [&["run", "-p", &private, "--", "docker", "-H", &host][..]].concat();
    let out = st.privy(&s(&[
        docker,
        Dockerd::run_with_privy(&["sha256sum", "/run/private/k"]),
    ]
    .concat()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&sha256_hex(&up)));
    // Without privy's runtime, nothing is injected (and nothing breaks).
    let o = dk.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "privy-bb:test",
        "ls",
        "/run",
    ]);
    assert!(!text(&o.stdout).contains("private"));
}

/// A dockerd of the test's own (own data root, exec root and socket, no
/// networking), with privy's shim as the runtime `privy`.
struct Dockerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Dockerd {
    fn start(w: &World) -> Dockerd {
        Dockerd::start_as(w, false)
    }

    /// With `add_runtime`, privy is the runtime `privy` the usual way,
    /// `--add-runtime privy=PATH` and no runtime arguments, and the
    /// default runtime (its config
    /// from `PRIVY_CONFIG` in dockerd's environment); else through
    /// daemon.json's `runtimeArgs`.
    fn start_as(w: &World, add_runtime: bool) -> Dockerd {
        let dir = tempfile::Builder::new().prefix("pdk-").tempdir().unwrap();
        let conf = if add_runtime {
            serde_json::json!({})
        } else {
            serde_json::json!({"runtimes": {"privy": {
                "path": util::privy_canonical(),
                "runtimeArgs": ["--config", w.config.to_str().unwrap(), "shim", "--runtime-path", util::which("runc").unwrap(), "--"],
            }}})
        };
        std::fs::write(dir.path().join("daemon.json"), conf.to_string()).unwrap();
        let p = |n: &str| dir.path().join(n);
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(p("data"))
            .arg("--exec-root")
            .arg(p("x"))
            .arg("--pidfile")
            .arg(p("pid"))
            .arg("-H")
            .arg(format!("unix://{}", p("d.sock").display()))
            .arg("--config-file")
            .arg(p("daemon.json"))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--storage-driver=vfs",
            ])
            .args(add_runtime.then(|| format!("--add-runtime=privy={}", util::privy_canonical())))
            .args(add_runtime.then_some("--default-runtime=privy"))
            .env("PRIVY_CONFIG", &w.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(p("dockerd.log")).unwrap(),
            ))
            .spawn()
            .unwrap();
        let d = Dockerd { child, dir };
        wait_until("dockerd", 60, || d.docker(&["version"]).status.success());
        d
    }

    /// The busybox image, imported into this dockerd as `privy-bb:test`.
    fn import_busybox(&self) {
        let root = tempfile::tempdir().unwrap();
        let tar = util::busybox_tar(root.path());
        let o = self.docker(&["import", tar.to_str().unwrap(), "privy-bb:test"]);
        assert!(o.status.success(), "{}", text(&o.stderr));
    }

    fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("d.sock").display())
    }

    /// `run --rm --network none --runtime privy privy-bb:test CMD...`.
    fn run_with_privy<'a>(cmd: &[&'a str]) -> Vec<&'a str> {
        let run = [
            "run",
            "--rm",
            "--network",
            "none",
            "--runtime",
            "privy",
            "privy-bb:test",
        ];
        [&run[..], cmd].concat()
    }

    fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(["-H", &self.host()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// `privy run -- docker ... run --runtime privy`: `docker stop`, a wait
/// past the daemon's sweep, and `docker start` bring the same upload
/// back (the engine removes the bundle on stop; the container lives on),
/// and `docker rm` drops the ticket within seconds. Without
/// `--runtime privy`, `privy run` refuses before uploading.
#[test]
fn b13_docker_stop_start_keeps_the_upload_and_rm_drops_it() {
    if !util::e2e_ready("runc") || !docker_ready() {
        return;
    }
    let st = Setup::new("");
    let d = st.daemon();
    let dk = Dockerd::start(&st.w);
    dk.import_busybox();
    let up = util::secret("docker-stop-start");
    let src = st.user_file("k", &up, 0o600);
    let private = format!("{}:k", src.display());
    let host = dk.host();
    let name = util::unique_id("dk");
    let privy_docker = |run: &[&str]| {
        st.privy(&s(&[
            &["run", "-p", &private, "--", "docker", "-H", &host][..],
            run,
        ]
        .concat()))
    };
    // No privy runtime: refused, with the fix, nothing uploaded or run.
    let o = privy_docker(&["run", "--rm", "--network", "none", "privy-bb:test", "true"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let e = text(&o.stderr);
    assert!(
        e.contains("docker will not run privy's hook")
            && e.contains("default runtime `runc`")
            && e.contains("add `--runtime privy` after `run`"),
        "{e}"
    );
    assert_eq!(super::hooked::live_tickets(&st.socket), 0);
    let o = privy_docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "none",
        "--runtime",
        "privy",
        "privy-bb:test",
        "sleep",
        "600",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let read = || {
        text(
            &dk.docker(&["exec", &name, "sha256sum", "/run/private/k"])
                .stdout,
        )
    };
    assert!(read().contains(&sha256_hex(&up)));
    let inspect = dk.docker(&[
        "inspect",
        "--format",
        "{{range .Config.Env}}{{println .}}{{end}}",
        &name,
    ]);
    let ticket = text(&inspect.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("PRIVY_TICKET=").map(str::to_owned))
        .expect("the ticket is in the container's environment (Docker 20.10)");
    let alive = || d.privy(&["ticket", "info", &ticket]).status.success();
    assert!(dk.docker(&["stop", "-t", "0", &name]).status.success());
    // Well past the sweep (every second here): the container still exists.
    std::thread::sleep(Duration::from_secs(4));
    assert!(alive(), "docker stop must not drop the ticket");
    let o = dk.docker(&["start", &name]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        read().contains(&sha256_hex(&up)),
        "docker start must inject the same upload"
    );
    let started = Instant::now();
    assert!(dk.docker(&["rm", "-f", &name]).status.success());
    wait_until("ticket dropped after docker rm", 10, || {
        let o = d.privy(&["ticket", "info", &ticket]);
        !o.status.success() && text(&o.stderr).contains("container was removed")
    });
    eprintln!("docker rm -> ticket dropped in {:?}", started.elapsed());
}

/// `dockerd --add-runtime privy=/path/to/privy`, no runtime arguments:
/// privy sees runc's command line (`--root ... create`) and acts as the
/// shim, with `runc` from PATH.
#[test]
fn b13_dockerd_add_runtime_privy_without_args_runs_the_hook() {
    if !util::e2e_ready("runc") || !docker_ready() {
        return;
    }
    let st = Setup::new("");
    let _d = st.daemon();
    let host_secret = util::secret("add-runtime");
    st.w.put("entitlement.pem", &host_secret, 0o644);
    // The real runtime comes from the config's `[shim] runtime`: a runc
    // wrapper that notes each call.
    let rt_dir = tempfile::tempdir().unwrap();
    let (rt, calls) = (rt_dir.path().join("rt"), rt_dir.path().join("calls"));
    std::fs::write(
        &rt,
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\nexec {} \"$@\"\n",
            calls.display(),
            util::which("runc").unwrap().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rt, std::fs::Permissions::from_mode(0o755)).unwrap();
    st.w.append_config(&format!("[shim]\nruntime = {rt:?}\n"));
    let dk = Dockerd::start_as(&st.w, true);
    dk.import_busybox();
    let o = dk.docker(&Dockerd::run_with_privy(&[
        "sha256sum",
        "/run/private/entitlement.pem",
    ]));
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains(&sha256_hex(&host_secret)));
    let called = std::fs::read_to_string(&calls).unwrap_or_default();
    assert!(
        called.lines().any(|l| l.contains(" create ")),
        "the config's runtime ran: {called}"
    );
    // And privy run's check sees privy as that runtime.
    let up = util::secret("add-runtime-upload");
    let src = st.user_file("k", &up, 0o600);
    let private = format!("{}:k", src.display());
    let host = dk.host();
    let out = st.privy(&s(&[
        &["run", "-p", &private, "--", "docker", "-H", &host][..],
        &Dockerd::run_with_privy(&["sha256sum", "/run/private/k"]),
    ]
    .concat()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&sha256_hex(&up)));
    // No `--runtime`: the daemon's default runtime is privy, which
    // privy run's check asks `docker info` for.
    let out = st.privy(&s(&[
        &["run", "-p", &private, "--", "docker", "-H", &host][..],
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "privy-bb:test",
            "sha256sum",
            "/run/private/k",
        ],
    ]
    .concat()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&sha256_hex(&up)));
}

fn docker_ready() -> bool {
    if util::which("dockerd").is_some() && util::which("docker").is_some() {
        return true;
    }
    assert!(
        std::env::var("PRIVY_E2E_REQUIRED").as_deref() != Ok("1"),
        "dockerd is not installed but PRIVY_E2E_REQUIRED=1"
    );
    eprintln!("SKIP: dockerd is not installed; Docker through privy shim not tried");
    false
}
