//! Rootless podman (issue 13, item 1), end to end as the real unprivileged
//! user `privy-rl` (made by `scripts/setup`: `/etc/subuid` and
//! `/etc/subgid` ranges, Debian's `uidmap`, a runtime dir). `privy run`,
//! `podman restart`, `privy build -- podman build` and plain `podman run
//! --hooks-dir` all run as that user with `--network none` (no
//! slirp4netns needed); the daemon runs as root, as it would on a host.
//!
//! What each test must not see is asserted too: no byte of a private file
//! on the host's disk (the user's home and container storage, `/tmp`,
//! `/var/tmp`, `/run`), no privy mount left in the host's namespace, no
//! operator source the config does not grant the user, no use of the
//! user's ticket by another uid. Skips, saying why, without the user or
//! the tools; fails instead under `PRIVY_E2E_REQUIRED=1`.

use crate::uploads::{as_nobody, config_for_anyone, privy_for_anyone, Setup};
use crate::util::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The unprivileged user `scripts/setup` makes.
const USER: &str = "privy-rl";
/// Its runtime dir (`XDG_RUNTIME_DIR`), made by `scripts/setup`.
const RUNTIME_DIR: &str = "/tmp/privy-rl-run";

/// The user's uid and home, when everything a rootless test needs is here.
fn ready() -> Option<(u32, PathBuf)> {
    if !crate::util::ready(&["podman", "newuidmap", "runuser"]) {
        return None;
    }
    let user = nix::unistd::User::from_name(USER).ok().flatten();
    let subuid = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
    let why = if user.is_none() {
        Some(format!("no user {USER}"))
    } else if !subuid.lines().any(|l| l.starts_with(&format!("{USER}:"))) {
        Some(format!("{USER} has no /etc/subuid range"))
    } else if !Path::new(RUNTIME_DIR).is_dir() {
        Some(format!("no runtime dir {RUNTIME_DIR}"))
    } else {
        None
    };
    if let Some(w) = why {
        if std::env::var("PRIVY_E2E_REQUIRED").as_deref() == Ok("1") {
            panic!("rootless test cannot run ({w}; run scripts/setup) but PRIVY_E2E_REQUIRED=1");
        }
        eprintln!("SKIP: {w} (run scripts/setup); rootless podman test did not run");
        return None;
    }
    let u = user.unwrap();
    Some((u.uid.as_raw(), u.dir))
}

/// `ARGS` as the user, with the environment a login would give it.
fn as_user(args: &[&str]) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", USER, "--", "env", "-i"])
        .arg(format!("XDG_RUNTIME_DIR={RUNTIME_DIR}"))
        .arg(format!(
            "HOME={}",
            nix::unistd::User::from_name(USER)
                .unwrap()
                .unwrap()
                .dir
                .display()
        ))
        .arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .arg(format!(
            "CONTAINERS_CONF={}",
            std::env::var("CONTAINERS_CONF").unwrap_or_default()
        ))
        .args(args)
        .current_dir("/")
        .stdin(Stdio::null());
    c
}

fn run_as_user(args: &[&str]) -> Output {
    as_user(args).output().unwrap()
}

/// The busybox image in the user's own storage, imported once per process.
fn user_image() -> &'static str {
    static IMG: OnceLock<String> = OnceLock::new();
    IMG.get_or_init(|| {
        let tag = format!(
            "localhost/privy-rl-busybox:{}",
            &sha256_file(&busybox().unwrap())[..16]
        );
        if run_as_user(&["podman", "image", "exists", &tag])
            .status
            .success()
        {
            return tag;
        }
        let d = process_dir("privy-rl-image", 0o755);
        let tar = busybox_tar(&d);
        std::fs::set_permissions(&tar, std::fs::Permissions::from_mode(0o644)).unwrap();
        let o = run_as_user(&[
            "podman",
            "import",
            "--change",
            "CMD [\"/bin/sh\"]",
            tar.to_str().unwrap(),
            &tag,
        ]);
        assert!(o.status.success(), "podman import: {}", text(&o.stderr));
        let _ = std::fs::remove_dir_all(d.join("rootfs"));
        tag
    })
}

/// A root daemon and a config, hooks dir and privy binary the user can
/// read and run; `private.d` directories the user may read (so a source
/// that is refused is refused by `when.users`, not by file modes).
struct Rl {
    st: Setup,
    /// The agent; a test may stop it.
    d: Option<Daemon>,
    home: PathBuf,
    privy: String,
    /// The user's own files, removed on drop.
    files: Vec<PathBuf>,
}

impl Rl {
    fn new(extra_sources: &str) -> Option<Rl> {
        let (_uid, home) = ready()?;
        let st = Setup::new("");
        if !extra_sources.is_empty() {
            st.w.append_config(extra_sources);
        }
        for p in [st.w.dir.path(), &st.w.private_d] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(&st.w.config, std::fs::Permissions::from_mode(0o644)).unwrap();
        let privy = privy_for_anyone().display().to_string();
        // The hooks.d entries name the binary any uid can run.
        let hooks = st.w.dir.path().join("hooks.d");
        let o = Command::new(&privy)
            .args([
                "--config",
                st.w.config.to_str().unwrap(),
                "install",
                "--hooks-dir",
            ])
            .arg(&hooks)
            .output()
            .unwrap();
        assert!(o.status.success(), "install: {}", text(&o.stderr));
        let d = st.daemon();
        Some(Rl {
            st,
            d: Some(d),
            home,
            privy,
            files: Vec::new(),
        })
    }

    fn hooks(&self) -> String {
        self.st.w.dir.path().join("hooks.d").display().to_string()
    }

    /// A file of the user's, 0600, in its home.
    fn user_file(&mut self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.home.join(format!("{}-{name}", unique_id("rl")));
        std::fs::write(&p, data).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let u = nix::unistd::User::from_name(USER).unwrap().unwrap();
        nix::unistd::chown(&p, Some(u.uid), Some(u.gid)).unwrap();
        self.files.push(p.clone());
        p
    }

    /// `privy --config OURS ARGS` as the user.
    fn privy(&self, args: &[&str]) -> Output {
        let cfg = self.st.w.config.display().to_string();
        run_as_user(&[&[self.privy.as_str(), "--config", &cfg], args].concat())
    }

    /// `podman --hooks-dir OURS ARGS` as the user.
    fn podman_args<'a>(&'a self, hooks: &'a str, args: &[&'a str]) -> Vec<&'a str> {
        [&["podman", "--hooks-dir", hooks][..], args].concat()
    }

    /// Nothing of `secret` on the host's disk where the user, its
    /// containers or privy could have put it; the search proves itself on
    /// a planted control first.
    fn assert_not_on_disk(&self, secret: &[u8]) {
        let roots: Vec<PathBuf> = ["/tmp", "/var/tmp", "/run"]
            .iter()
            .map(PathBuf::from)
            .chain([self.home.clone()])
            .collect();
        let control = tempfile::Builder::new()
            .prefix("privy-control-")
            .tempfile_in("/var/tmp")
            .unwrap();
        std::fs::write(control.path(), secret).unwrap();
        // The user's files themselves are where the user put them.
        let search = || -> Vec<PathBuf> {
            search_disk(&roots, secret)
                .into_iter()
                .filter(|p| !self.files.contains(p))
                .collect()
        };
        assert_eq!(
            search(),
            vec![control.path().to_path_buf()],
            "the search must find the planted control"
        );
        drop(control);
        let hits = search();
        assert!(hits.is_empty(), "a private file's bytes on disk: {hits:?}");
        assert!(
            !contains(&self.st.w.log(), secret),
            "a secret in privy's log"
        );
    }
}

impl Drop for Rl {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// No tmpfs mounted at a `run/private` in the host's mount namespace.
fn assert_no_host_mount() {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let leaked: Vec<&str> = mi
        .lines()
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|mp| mp.ends_with("/run/private"))
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "privy mounts in the host namespace: {leaked:?}"
    );
}

#[test]
fn rootless_podman_run_gets_the_upload_owned_by_the_container_user_and_leaves_no_trace() {
    let Some(mut rl) = Rl::new("") else { return };
    let image = user_image();
    let secret = secret("rootless-run");
    let src = rl.user_file("tok", &secret);
    let hooks = rl.hooks();
    let spec = format!("{}:tok", src.display());
    for (user, want) in [(None, "0:0 600"), (Some("1234:2345"), "1234:2345 600")] {
        let mut podman = vec![
            "podman",
            "run",
            "--rm",
            "--network",
            "none",
            "--hooks-dir",
            &hooks,
        ];
        if let Some(u) = user {
            podman.extend(["--user", u]);
        }
        let script = "sha256sum /run/private/tok; stat -c '%u:%g %a' /run/private/tok; grep ' /run/private ' /proc/mounts";
        podman.extend([image, "sh", "-c", script]);
        let o = rl.privy(&[&["run", "--private", &spec, "--"][..], &podman].concat());
        assert!(o.status.success(), "{user:?}: {}", text(&o.stderr));
        let out = text(&o.stdout);
        assert!(out.contains(&sha256_hex(&secret)), "{user:?}: {out}");
        assert!(
            out.contains(want),
            "owner as the container user, {want}: {out}"
        );
        // Read-only, and the options privy sets, whatever noswap did.
        let mount = out
            .lines()
            .find(|l| l.contains(" /run/private tmpfs "))
            .unwrap();
        for opt in ["ro", "nosuid", "nodev", "noexec", "mode=700"] {
            assert!(mount.split([' ', ',']).any(|o| o == opt), "{opt}: {mount}");
        }
        assert!(!contains(&o.stdout, &secret) && !contains(&o.stderr, &secret));
    }
    // The state poststop needed was the user's, and poststop removed it.
    let state = Path::new("/tmp").join(format!("privy-state-{}", ready().unwrap().0));
    if state.exists() {
        let md = std::fs::symlink_metadata(&state).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(md.uid(), ready().unwrap().0);
        assert_eq!(md.mode() & 0o777, 0o700);
    }
    assert!(
        !rl.st.w.dir.path().join("state").exists(),
        "a rootless hook never writes the config's (root's) state_dir"
    );
    rl.assert_not_on_disk(&secret);
    assert_no_host_mount();
}

#[test]
fn rootless_podman_restart_reinjects_the_upload() {
    let Some(mut rl) = Rl::new("") else { return };
    let image = user_image();
    let secret = secret("rootless-restart");
    let src = rl.user_file("k", &secret);
    let name = unique_id("rl-restart");
    let hooks = rl.hooks();
    let spec = format!("{}:k", src.display());
    let podman = [
        "podman",
        "run",
        "-d",
        "--network",
        "none",
        "--hooks-dir",
        &hooks,
        "--name",
        &name,
        image,
        "sleep",
        "600",
    ];
    let o = rl.privy(&[&["run", "-p", &spec, "--"][..], &podman].concat());
    assert!(o.status.success(), "{}", text(&o.stderr));
    let read =
        || text(&run_as_user(&["podman", "exec", &name, "sha256sum", "/run/private/k"]).stdout);
    assert!(read().contains(&sha256_hex(&secret)));
    let o = run_as_user(&rl.podman_args(&hooks, &["restart", "-t", "0", &name]));
    let restarted = o.status.success();
    let again = read();
    let _ = run_as_user(&["podman", "rm", "-f", "-t", "0", &name]);
    assert!(restarted, "restart: {}", text(&o.stderr));
    assert!(
        again.contains(&sha256_hex(&secret)),
        "restart must re-inject: {again}"
    );
    rl.assert_not_on_disk(&secret);
    assert_no_host_mount();
}

#[test]
fn rootless_privy_build_gives_run_steps_the_file_and_the_image_keeps_no_trace() {
    let Some(mut rl) = Rl::new("") else { return };
    let image = user_image();
    let secret = secret("rootless-build");
    let src = rl.user_file("b", &secret);
    let ctx = process_dir("privy-rl-ctx", 0o755).join(unique_id("ctx"));
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::set_permissions(&ctx, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The step copies the file's digest (not the file) into the image.
    std::fs::write(
        ctx.join("Containerfile"),
        format!("FROM {image}\nRUN sha256sum /run/private/b > /digest\n"),
    )
    .unwrap();
    std::fs::set_permissions(
        ctx.join("Containerfile"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let tag = format!("localhost/{}:t", unique_id("rl-build"));
    let spec = format!("{}:b", src.display());
    let o = rl.privy(&[
        "build",
        "-p",
        &spec,
        "--",
        "podman",
        "build",
        "--no-cache",
        "--network",
        "none",
        "-t",
        &tag,
        ctx.to_str().unwrap(),
    ]);
    let built = o.status.success();
    let digest = run_as_user(&[
        "podman",
        "run",
        "--rm",
        "--network",
        "none",
        &tag,
        "cat",
        "/digest",
    ]);
    let listing = run_as_user(&[
        "podman",
        "run",
        "--rm",
        "--network",
        "none",
        &tag,
        "ls",
        "-a",
        "/run",
    ]);
    let saved = process_dir("privy-rl-save", 0o777).join(format!("{}.tar", unique_id("img")));
    let save = run_as_user(&["podman", "save", "-o", saved.to_str().unwrap(), &tag]);
    let _ = run_as_user(&["podman", "rmi", "-f", &tag]);
    let _ = std::fs::remove_dir_all(&ctx);
    assert!(built, "privy build: {}", text(&o.stderr));
    assert!(text(&o.stderr).contains("is clean"), "{}", text(&o.stderr));
    assert!(
        text(&digest.stdout).contains(&sha256_hex(&secret)),
        "the RUN step read the file"
    );
    assert!(
        !text(&listing.stdout).lines().any(|l| l.trim() == "private"),
        "poststop left run/private in the image: {}",
        text(&listing.stdout)
    );
    assert!(save.status.success(), "podman save: {}", text(&save.stderr));
    let tar = std::fs::read(&saved).unwrap();
    let _ = std::fs::remove_file(&saved);
    assert!(!contains(&tar, &secret), "the image holds the private file");
    rl.assert_not_on_disk(&secret);
    assert_no_host_mount();
}

#[test]
fn rootless_plain_podman_gets_only_the_sources_when_users_grants_it() {
    let dirs = process_dir("privy-rl-src", 0o755).join(unique_id("src"));
    let (granted, refused, by_group) = (
        dirs.join("granted"),
        dirs.join("refused"),
        dirs.join("group"),
    );
    let (s_granted, s_refused, s_group, s_default) = (
        secret("rl-granted"),
        secret("rl-refused"),
        secret("rl-group"),
        secret("rl-default"),
    );
    for (d, f, data) in [
        (&granted, "g", &s_granted),
        (&refused, "r", &s_refused),
        (&by_group, "p", &s_group),
    ] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(d.join(f), data).unwrap();
        // Readable by the user: a refusal must come from the policy.
        std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let Some(rl) = Rl::new(&format!(
        "[[source]]\nname = \"for-rl\"\nplugin = \"host-dir\"\ngrant.dirs = [{granted:?}]\nwhen = {{ users = [\"{USER}\"] }}\n\
         [[source]]\nname = \"for-group\"\nplugin = \"host-dir\"\ngrant.dirs = [{by_group:?}]\nwhen = {{ users = [\"group:{USER}\", \"root\"] }}\n\
         [[source]]\nname = \"for-others\"\nplugin = \"host-dir\"\ngrant.dirs = [{refused:?}]\nwhen = {{ users = [\"root\", 4242, \"group:root\"] }}\n"
    )) else {
        let _ = std::fs::remove_dir_all(&dirs);
        return;
    };
    // The world's own host-dir source has no `when.users`: root only.
    rl.st.w.put("d", &s_default, 0o644);
    let image = user_image();
    let hooks = rl.hooks();
    let o = run_as_user(&rl.podman_args(
        &hooks,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            image,
            "sh",
            "-c",
            "ls /run/private; sha256sum /run/private/*",
        ],
    ));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains(&sha256_hex(&s_granted)), "by name: {out}");
    assert!(out.contains(&sha256_hex(&s_group)), "by group: {out}");
    assert!(!out.contains(&sha256_hex(&s_refused)), "not granted: {out}");
    assert!(
        !out.contains(&sha256_hex(&s_default)),
        "no users = root only: {out}"
    );
    let names: Vec<&str> = out.lines().take_while(|l| !l.contains(' ')).collect();
    assert_eq!(names, vec!["g", "p"], "{out}");
    // And the same config still gives root (a rootful podman) what it
    // gave before, and what names root.
    let o = Command::new("podman")
        .args(["--hooks-dir", &hooks, "run", "--rm", "--network", "none"])
        .arg(busybox_image())
        .args(["sh", "-c", "ls /run/private"])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dirs);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let root_names: Vec<String> = text(&o.stdout).lines().map(str::to_owned).collect();
    assert_eq!(
        root_names,
        vec!["d", "p", "r"],
        "root: {}",
        text(&rl.st.w.log())
    );
    for s in [&s_granted, &s_refused, &s_group, &s_default] {
        assert!(!contains(&o.stdout, s) && !contains(&o.stderr, s));
    }
    assert_no_host_mount();
}

#[test]
fn l8_another_user_can_neither_claim_nor_read_the_rootless_users_ticket() {
    let Some(mut rl) = Rl::new("") else { return };
    let secret = secret("rl-ticket");
    let src = rl.user_file("t", &secret);
    let o = rl.privy(&["upload", "-p", &format!("{}:t", src.display())]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let t = text(&o.stdout).trim().to_string();
    assert!(t.starts_with("pvt_"), "{t}");
    let p = privy_for_anyone().display().to_string();
    let c = config_for_anyone();
    for verb in ["info", "rm"] {
        let o = as_nobody(
            &[
                p.clone(),
                "--config".into(),
                c.clone(),
                "ticket".into(),
                verb.into(),
                t.clone(),
            ],
            &rl.st.socket,
        );
        assert!(!o.status.success());
        assert!(
            text(&o.stderr).contains("belongs to another user"),
            "{verb}: {}",
            text(&o.stderr)
        );
    }
    let url = format!("http://privy/v1/tickets/{t}/claim");
    let o = as_nobody(
        &[
            "curl",
            "-s",
            "-w",
            "\n%{http_code}",
            "--unix-socket",
            rl.st.socket.to_str().unwrap(),
            "-X",
            "POST",
            "-d",
            r#"{"container_id":"x","bundle":"/tmp"}"#,
            &url,
        ]
        .map(String::from),
        &rl.st.socket,
    );
    assert!(text(&o.stdout).ends_with("403"), "{}", text(&o.stdout));
    assert!(!contains(&o.stdout, &secret));
    // The owner still has it, and drops it.
    let o = rl.privy(&["ticket", "rm", &t]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    rl.assert_not_on_disk(&secret);
}

/// Root-only files (a 0700 directory of root's, outside every place the
/// disk search looks, so a hit there is a copy).
fn root_only_dir(files: &[(&str, &str, &[u8])]) -> tempfile::TempDir {
    let top = tempfile::Builder::new()
        .prefix("privy-rl-root-only-")
        .tempdir_in("/root")
        .unwrap();
    std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    for (dir, name, data) in files {
        let d = top.path().join(dir);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(d.join(name), data).unwrap();
        std::fs::set_permissions(d.join(name), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    top
}

#[test]
fn rootless_the_agent_serves_a_root_only_source_to_the_user_it_names_and_nothing_else() {
    let (s_granted, s_refused) = (secret("rl-root-only"), secret("rl-root-refused"));
    let top = root_only_dir(&[
        ("granted", "key", &s_granted),
        ("refused", "other", &s_refused),
    ]);
    let (granted, refused) = (top.path().join("granted"), top.path().join("refused"));
    // The user can read neither: only the agent, running the source with
    // its own rights on the user's behalf, can give the granted one.
    let Some(mut rl) = Rl::new(&format!(
        "[[source]]\nname = \"for-rl\"\nplugin = \"host-dir\"\ngrant.dirs = [{granted:?}]\nwhen = {{ users = [\"{USER}\"] }}\n\
         [[source]]\nname = \"for-root\"\nplugin = \"host-dir\"\ngrant.dirs = [{refused:?}]\n"
    )) else {
        return;
    };
    let image = user_image();
    let hooks = rl.hooks();
    let script = "ls /run/private; sha256sum /run/private/*; stat -c '%u:%g %a' /run/private/key";
    let run = |rl: &Rl| {
        run_as_user(&rl.podman_args(
            &hooks,
            &[
                "run",
                "--rm",
                "--network",
                "none",
                image,
                "sh",
                "-c",
                script,
            ],
        ))
    };
    let o = run(&rl);
    let daemon_log =
        || std::fs::read_to_string(rl.st.w.dir.path().join("daemon.log")).unwrap_or_default();
    assert!(o.status.success(), "{} {}", text(&o.stderr), daemon_log());
    let out = text(&o.stdout);
    assert!(
        out.contains(&sha256_hex(&s_granted)),
        "{out} {}",
        daemon_log()
    );
    assert!(!out.contains(&sha256_hex(&s_refused)), "not granted: {out}");
    let names: Vec<&str> = out.lines().take_while(|l| !l.contains(' ')).collect();
    assert_eq!(names, vec!["key"], "{out}");
    // Owned by the container's user (root in it: the user on the host).
    assert!(out.contains("0:0 600"), "{out}");
    for s in [&s_granted, &s_refused] {
        assert!(!contains(&o.stdout, s) && !contains(&o.stderr, s));
    }
    // With no agent, the user's hook runs the source with the user's own
    // rights: it cannot read the directory, and the container does not
    // start without its required source.
    drop(rl.d.take());
    let o = run(&rl);
    assert!(
        !contains(&o.stdout, &s_granted),
        "the user's own hook read a root-only file"
    );
    assert!(!o.status.success(), "the container started");
    let err = text(&o.stderr);
    assert!(err.contains("for-rl"), "the failing source is named: {err}");
    for s in [&s_granted, &s_refused] {
        assert!(!contains(&o.stdout, s) && !contains(&o.stderr, s));
    }
    rl.files.clear();
    rl.assert_not_on_disk(&s_granted);
    assert_no_host_mount();
}

#[test]
fn l8_a_users_container_never_gets_a_ticket_that_is_not_the_users_own() {
    let Some(rl) = Rl::new("") else { return };
    let secret = secret("root-ticket");
    let top = root_only_dir(&[("up", "t", &secret)]);
    let src = top.path().join("up/t");
    let o = rl
        .st
        .privy(&["upload".into(), "-p".into(), format!("{}:t", src.display())]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let t = text(&o.stdout).trim().to_string();
    assert!(t.starts_with("pvt_"), "{t}");
    // The user's container names root's ticket: the agent, root itself,
    // claims it for the user, and the daemon refuses.
    let hooks = rl.hooks();
    let ann = format!("io.privy.ticket={t}");
    let o = run_as_user(&rl.podman_args(
        &hooks,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--annotation",
            &ann,
            user_image(),
            "cat",
            "/run/private/t",
        ],
    ));
    // (Never print what the container read: it could be root's secret.)
    assert!(
        !contains(&o.stdout, &secret),
        "the user's container read root's ticket"
    );
    assert!(!o.status.success(), "the container started");
    assert!(
        text(&o.stderr).contains("belongs to another user"),
        "{}",
        text(&o.stderr)
    );
    assert!(!contains(&o.stdout, &secret) && !contains(&o.stderr, &secret));
    // A user may not claim for another uid's container, even its own
    // ticket's owner.
    let url = format!("http://privy/v1/tickets/{t}/claim");
    let o = as_nobody(
        &[
            "curl",
            "-s",
            "-w",
            "\n%{http_code}",
            "--unix-socket",
            rl.st.socket.to_str().unwrap(),
            "-X",
            "POST",
            "-d",
            r#"{"container_id":"x","bundle":"/tmp","for_uid":0}"#,
            &url,
        ]
        .map(String::from),
        &rl.st.socket,
    );
    let so = text(&o.stdout);
    assert!(so.ends_with("403"), "{so}");
    assert!(so.contains("only root may claim for another uid"), "{so}");
    assert!(!contains(&o.stdout, &secret));
    // Root's ticket is untouched: root still reads it.
    let o = rl.st.privy(&["ticket".into(), "info".into(), t.clone()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = rl.st.privy(&["ticket".into(), "rm".into(), t]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(!contains(&rl.st.w.log(), &secret));
}

#[test]
fn rootless_the_user_refreshes_its_own_container_and_no_one_else_can() {
    let (v1, v2) = (secret("rl-refresh-v1"), secret("rl-refresh-v2"));
    let top = root_only_dir(&[("granted", "key", &v1)]);
    let granted = top.path().join("granted");
    let Some(rl) = Rl::new(&format!(
        "[[source]]\nname = \"for-rl\"\nplugin = \"host-dir\"\ngrant.dirs = [{granted:?}]\nwhen = {{ users = [\"{USER}\"] }}\n"
    )) else {
        return;
    };
    let hooks = rl.hooks();
    let o = run_as_user(&rl.podman_args(
        &hooks,
        &[
            "run",
            "-d",
            "--network",
            "none",
            user_image(),
            "sleep",
            "600",
        ],
    ));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let id = text(&o.stdout).trim().to_string();
    struct Rm(String);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = run_as_user(&["podman", "rm", "-f", "-t", "0", &self.0]);
        }
    }
    let _rm = Rm(id.clone());
    let read = || {
        let o = run_as_user(&[
            "podman",
            "exec",
            &id,
            "sh",
            "-c",
            "sha256sum /run/private/key; stat -c '%u:%g %a' /run/private/key; grep ' /run/private ' /proc/mounts",
        ]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        text(&o.stdout)
    };
    assert!(read().contains(&sha256_hex(&v1)));
    std::fs::write(granted.join("key"), &v2).unwrap();
    // Another uid has no record of it, and cannot refresh it.
    let p = privy_for_anyone().display().to_string();
    let o = as_nobody(
        &[
            p,
            "--config".into(),
            config_for_anyone(),
            "refresh".into(),
            id.clone(),
        ],
        &rl.st.socket,
    );
    assert!(!o.status.success());
    assert!(read().contains(&sha256_hex(&v1)), "nobody changed it");
    // The user refreshes its own container: the agent gives the root-only
    // source (granted by when.users), the child joins the container's user
    // namespace to replace the file.
    let o = rl.privy(&["refresh", &id]);
    assert!(
        o.status.success(),
        "{} {}",
        text(&o.stderr),
        std::fs::read_to_string(rl.st.w.dir.path().join("daemon.log")).unwrap_or_default()
    );
    assert!(text(&o.stdout).contains("1 changed"), "{}", text(&o.stdout));
    let out = read();
    assert!(out.contains(&sha256_hex(&v2)), "{out}");
    assert!(out.contains("0:0 600"), "owner kept: {out}");
    let mount = out.lines().find(|l| l.contains(" /run/private ")).unwrap();
    for opt in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(mount.split([' ', ',']).any(|o| o == opt), "{opt}: {mount}");
    }
    for s in [&v1, &v2] {
        assert!(!contains(&o.stdout, s) && !contains(&o.stderr, s));
        assert!(!contains(&rl.st.w.log(), s));
    }
    rl.assert_not_on_disk(&v2);
    assert_no_host_mount();
}
