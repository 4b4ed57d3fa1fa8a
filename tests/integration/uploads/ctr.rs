//! ctr (containerd's CLI) through `privy run`: the ticket goes in as
//! `--annotation`, the hook runs through `--runc-binary privy-shim`, the
//! upload lives while the container exists in containerd (through
//! `ctr task rm` and a new task) and is dropped within seconds of
//! `ctr containers rm`. A containerd of the test's own (own root, state
//! and socket, no CRI).

use super::*;

/// A containerd of the test's own, with privy's config in its
/// environment (the shim it starts reads it).
struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Containerd {
    fn start(w: &World) -> Containerd {
        let dir = tempfile::Builder::new().prefix("pctd-").tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let conf = format!(
            "version = 2\nroot = {:?}\nstate = {:?}\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = {:?}\n",
            p("root"),
            p("state"),
            p("c.sock")
        );
        std::fs::write(p("config.toml"), conf).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(p("config.toml"))
            .env("PRIVY_CONFIG", &w.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(p("containerd.log")).unwrap(),
            ))
            .spawn()
            .unwrap();
        let c = Containerd { child, dir };
        wait_until("containerd", 60, || c.ctr(&["version"]).status.success());
        c
    }

    fn socket(&self) -> String {
        self.dir.path().join("c.sock").display().to_string()
    }

    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .args(["60", "ctr", "-a", &self.socket()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// podman's busybox test image, imported; its name.
    fn import_busybox(&self) -> String {
        let image = podman_image();
        let tar = self.dir.path().join("bb.tar");
        let o = Command::new("podman")
            .args(["save", "-q", "--format", "docker-archive", "-o"])
            .arg(&tar)
            .arg(image)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        let o = self.ctr(&["images", "import", tar.to_str().unwrap()]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        image.to_string()
    }

    /// Stop and delete container `id`'s task (the bundle goes with it).
    fn end_task(&self, id: &str) {
        let _ = self.ctr(&["task", "kill", "-s", "KILL", id]);
        wait_until("task stopped", 30, || {
            text(&self.ctr(&["task", "ls"]).stdout)
                .lines()
                .all(|l| !l.starts_with(id) || l.contains("STOPPED"))
        });
        assert!(self.ctr(&["task", "rm", id]).status.success());
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let ids = text(&self.ctr(&["containers", "ls", "-q"]).stdout);
        for id in ids.lines() {
            let _ = self.ctr(&["task", "kill", "-s", "KILL", id]);
            let _ = self.ctr(&["task", "rm", "-f", id]);
            let _ = self.ctr(&["containers", "rm", id]);
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

#[test]
fn b13_ctr_gets_the_ticket_and_keeps_it_until_ctr_containers_rm() {
    if !podman_ready() || !util::ready(&["containerd", "containerd-shim-runc-v2", "ctr"]) {
        return;
    }
    let st = Setup::new("");
    let d = st.daemon();
    let ct = Containerd::start(&st.w);
    let image = ct.import_busybox();
    let shim = st.w.dir.path().join(privy::contract::SHIM_ARGV0);
    std::os::unix::fs::symlink(util::privy_canonical(), &shim).unwrap();
    let up = util::secret("ctr-upload");
    let src = st.user_file("k", &up, 0o600);
    let private = format!("{}:k", src.display());
    let sock = ct.socket();
    let id = util::unique_id("ctr");
    let privy_ctr = |run: &[&str]| {
        st.privy(&s(&[
            &["run", "-p", &private, "--", "ctr", "-a", &sock, "run"][..],
            run,
        ]
        .concat()))
    };
    // Without privy as the runtime binary: refused, with the fix.
    let o = privy_ctr(&["--rm", &image, &id, "true"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let e = text(&o.stderr);
    assert!(
        e.contains("ctr will not run privy's hook")
            && e.contains("--runc-binary /usr/local/bin/privy-shim"),
        "{e}"
    );
    assert_eq!(super::hooked::live_tickets(&st.socket), 0);
    // With it: the annotation reaches the hook, the file is there.
    let shim_s = shim.to_str().unwrap();
    let o = privy_ctr(&["-d", "--runc-binary", shim_s, &image, &id, "sleep", "600"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let read = |exec: &str| {
        text(
            &ct.ctr(&[
                "task",
                "exec",
                "--exec-id",
                exec,
                &id,
                "sha256sum",
                "/run/private/k",
            ])
            .stdout,
        )
    };
    assert!(read("r1").contains(&sha256_hex(&up)));
    let info = text(&ct.ctr(&["containers", "info", &id]).stdout);
    let ticket = info
        .split('"')
        .find(|w| w.starts_with("pvt_"))
        .expect("the ticket is among the container's annotations")
        .to_string();
    // The task (and its bundle) goes; the container stays, and so does
    // the ticket, well past the sweep.
    ct.end_task(&id);
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        d.privy(&["ticket", "info", &ticket]).status.success(),
        "ctr task rm must not drop the ticket"
    );
    let o = ct.ctr(&["task", "start", "-d", &id]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        read("r2").contains(&sha256_hex(&up)),
        "a new task gets the same upload"
    );
    ct.end_task(&id);
    let started = Instant::now();
    assert!(ct.ctr(&["containers", "rm", &id]).status.success());
    wait_until("ticket dropped after ctr containers rm", 10, || {
        let o = d.privy(&["ticket", "info", &ticket]);
        !o.status.success() && text(&o.stderr).contains("container was removed")
    });
    eprintln!(
        "ctr containers rm -> ticket dropped in {:?}",
        started.elapsed()
    );
}
