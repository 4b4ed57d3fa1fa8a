//! Builds (issue 4): real `podman build` and `buildah bud` from a
//! busybox-static base made with `podman import`, privy's hooks in a
//! private hooks directory (never the system one).
//!
//! Every source here is scoped `when.stage = "build"` (and a decoy
//! `"run"`), so a RUN step that reads its file proves the hook saw a build.
//! Each built image is exported with skopeo and every layer blob, the
//! config and the manifest are searched byte for byte; the same search
//! must find a planted control, so it cannot pass by searching nothing.
//! Root-only; skips (or fails under `PRIVY_E2E_REQUIRED=1`) without
//! podman, buildah, skopeo or a static busybox.

use crate::util::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn ready() -> bool {
    ["podman", "buildah", "skopeo"].iter().all(|t| e2e_ready(t))
}

fn base_image() -> &'static str {
    crate::util::busybox_image()
}

fn run_ok(c: &mut Command) -> Output {
    let out = c.stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{c:?} failed: {}", text(&out.stderr));
    out
}

/// An image tag removed (with every tag on the same image) on drop.
struct Image(String);

impl Image {
    fn new() -> Image {
        Image(format!("localhost/{}:t", unique_id("build")))
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rmi", "-f", &self.0]).output();
    }
}

fn image_exists(name: &str) -> bool {
    Command::new("podman")
        .args(["image", "exists", name])
        .status()
        .unwrap()
        .success()
}

/// A test world for builds: a build-only and a run-only source, each a
/// host directory with one secret file, and a build context.
struct BuildWorld {
    w: World,
    /// Build-only secret at `/run/private/b`, and the file holding it.
    secret: Vec<u8>,
    secret_file: PathBuf,
    /// Run-only secret `r`: must never reach a build step.
    run_secret: Vec<u8>,
    ctx: tempfile::TempDir,
}

impl BuildWorld {
    fn new(containerfile: &str) -> BuildWorld {
        let w = World::new("", "");
        let bdir = w.dir.path().join("build.d");
        let rdir = w.dir.path().join("run.d");
        std::fs::create_dir_all(&bdir).unwrap();
        std::fs::create_dir_all(&rdir).unwrap();
        let run_secret = secret("run");
        let secret = secret("build");
        std::fs::write(bdir.join("b"), &secret).unwrap();
        std::fs::write(rdir.join("r"), &run_secret).unwrap();
        // Only requests that carry the annotation get `a`: plain builds
        // do not, `privy build`'s do (through the hook's env).
        let adir = w.dir.path().join("annotated.d");
        std::fs::create_dir_all(&adir).unwrap();
        std::fs::write(adir.join("a"), crate::util::secret("annotated")).unwrap();
        let mut cfg = std::fs::read_to_string(&w.config).unwrap();
        cfg.push_str(&format!(
            "\n[[source]]\nname = \"build-only\"\nplugin = \"host-dir\"\ngrant.dirs = [{bdir:?}]\nwhen = {{ stage = \"build\" }}\n\
             \n[[source]]\nname = \"run-only\"\nplugin = \"host-dir\"\ngrant.dirs = [{rdir:?}]\nwhen = {{ stage = \"run\" }}\n\
             \n[[source]]\nname = \"annotated\"\nplugin = \"host-dir\"\ngrant.dirs = [{adir:?}]\nwhen = {{ annotation = \"io.privy.stage\", value = \"build\" }}\n"
        ));
        std::fs::write(&w.config, cfg).unwrap();
        let ctx = tempfile::Builder::new()
            .prefix("privy-build-ctx-")
            .tempdir()
            .unwrap();
        std::fs::write(
            ctx.path().join("Containerfile"),
            containerfile.replace("BASE", base_image()),
        )
        .unwrap();
        BuildWorld {
            secret_file: bdir.join("b"),
            w,
            secret,
            run_secret,
            ctx,
        }
    }

    /// `privy --config <ours> build ARGS`, stdout and stderr captured.
    fn privy_build(&self, args: &[&str]) -> Output {
        self.w.privy(&[&["build"], args].concat())
    }

    fn ctx(&self) -> &str {
        self.ctx.path().to_str().unwrap()
    }

    /// A hooks.d directory with privy's entries, as `privy install` writes them.
    fn hooks_dir(&self) -> PathBuf {
        let d = self.w.dir.path().join("hooks.d");
        let out = self
            .w
            .privy(&["install", "--hooks-dir", d.to_str().unwrap()]);
        assert!(out.status.success(), "install: {}", text(&out.stderr));
        d
    }
}

/// An image exported with skopeo into an OCI layout: each layer's
/// decompressed tar, and the config and manifest.
struct Exported {
    blobs: Vec<Vec<u8>>,
    layers: Vec<(String, Vec<u8>)>,
    config: Vec<u8>,
}

fn export(image: &str) -> Exported {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("oci");
    run_ok(Command::new("skopeo").args([
        "copy",
        "-q",
        &format!("containers-storage:{image}"),
        &format!("oci:{}:x", dir.display()),
    ]));
    let blob = |digest: &str| {
        std::fs::read(
            dir.join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let config = blob(manifest["config"]["digest"].as_str().unwrap());
    let mut layers = Vec::new();
    for l in manifest["layers"].as_array().unwrap() {
        let digest = l["digest"].as_str().unwrap().to_string();
        let raw = blob(&digest);
        let tar = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut c = Command::new("gzip")
                .arg("-dc")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = c.stdin.take().unwrap();
            let writer = std::thread::spawn(move || {
                use std::io::Write;
                stdin.write_all(&raw).unwrap();
            });
            let out = c.wait_with_output().unwrap();
            writer.join().unwrap();
            assert!(out.status.success(), "gunzip {digest}");
            out.stdout
        } else {
            raw
        };
        layers.push((digest, tar));
    }
    let blobs = std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    Exported {
        blobs,
        layers,
        config,
    }
}

/// The entry names in a tar, as `tar -t` lists them.
fn tar_entries(tar: &[u8]) -> Vec<String> {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("l.tar");
    std::fs::write(&f, tar).unwrap();
    let out = run_ok(Command::new("tar").arg("-tf").arg(&f));
    text(&out.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").to_string())
        .collect()
}

/// One file's content from a tar.
fn tar_file(tar: &[u8], name: &str) -> Option<Vec<u8>> {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("l.tar");
    std::fs::write(&f, tar).unwrap();
    for n in [name.to_string(), format!("./{name}")] {
        let out = Command::new("tar")
            .arg("-xOf")
            .arg(&f)
            .arg(&n)
            .stderr(Stdio::null())
            .output()
            .unwrap();
        if out.status.success() {
            return Some(out.stdout);
        }
    }
    None
}

impl Exported {
    /// Does any byte of the export (raw blobs, decompressed layers, config) hold `needle`?
    fn holds(&self, needle: &[u8]) -> bool {
        self.blobs.iter().any(|b| contains(b, needle))
            || self.layers.iter().any(|(_, t)| contains(t, needle))
            || contains(&self.config, needle)
    }

    /// Layer entries at or under `run/private`.
    fn run_private_entries(&self) -> Vec<String> {
        self.layers
            .iter()
            .flat_map(|(d, t)| {
                tar_entries(t)
                    .into_iter()
                    .filter(|e| {
                        let e = e.trim_end_matches('/');
                        e == "run/private" || e.starts_with("run/private/")
                    })
                    .map(move |e| format!("{d}: {e}"))
            })
            .collect()
    }

    fn file(&self, name: &str) -> Option<Vec<u8>> {
        self.layers
            .iter()
            .rev()
            .find_map(|(_, t)| tar_file(t, name))
    }
}

const CLEAN: &str = "FROM BASE\n\
COPY control.txt /control.txt\n\
RUN test -e /run/private/b && test ! -e /run/private/r && wc -c < /run/private/b > /size\n\
RUN test -e /run/private/b && echo second step > /second && ls /run/private > /listing\n";

/// The checks every clean build must pass: the step's size record, a
/// byte search of everything exported that finds the control and no
/// secret, no `run/private` entry in any layer, and `privy scan` clean.
fn assert_clean_image(bw: &BuildWorld, image: &str, control: &[u8]) {
    let ex = export(image);
    assert!(ex.layers.len() >= 2, "base layer plus the build's");
    assert_eq!(
        ex.file("size").map(|s| text(&s).trim().to_string()),
        Some(bw.secret.len().to_string()),
        "the RUN step read the private file and recorded its size"
    );
    assert!(ex.file("second").is_some(), "every RUN step got the files");
    assert!(ex.holds(control), "the byte search finds a planted control");
    assert!(
        !ex.holds(&bw.secret),
        "a private byte reached the image (L3)"
    );
    assert!(!ex.holds(&bw.run_secret));
    let half = &bw.secret[bw.secret.len() / 2..];
    assert!(!ex.holds(half));
    assert_eq!(
        ex.run_private_entries(),
        Vec::<String>::new(),
        "run/private in a layer (L3)"
    );

    let target = format!("containers-storage:{image}");
    let out = bw.w.privy(&[
        "scan",
        "--secret-file",
        bw.secret_file.to_str().unwrap(),
        &target,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "privy scan: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // The same scan finds the control, so its 0 above means something.
    let ctl = bw.w.dir.path().join("control.txt");
    std::fs::write(&ctl, control).unwrap();
    let out =
        bw.w.privy(&["scan", "--secret-file", ctl.to_str().unwrap(), &target]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "privy scan finds the control: {}",
        text(&out.stderr)
    );
}

fn control(bw: &BuildWorld) -> Vec<u8> {
    let c = secret("control");
    std::fs::write(bw.ctx.path().join("control.txt"), &c).unwrap();
    c
}

#[test]
fn privy_build_with_podman_gives_every_run_step_the_files_and_leaves_no_trace() {
    if !ready() {
        return;
    }
    let bw = BuildWorld::new(CLEAN);
    let control = control(&bw);
    let img = Image::new();
    let out = bw.privy_build(&[
        "--",
        "podman",
        "build",
        "--no-cache",
        "-t",
        &img.0,
        bw.ctx(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{}\n{err}", text(&out.stdout));
    assert!(err.contains("is clean"), "{err}");
    assert!(!contains(&out.stdout, &bw.secret) && !contains(&out.stderr, &bw.secret));
    assert!(!contains(&bw.w.log(), &bw.secret));
    assert_clean_image(&bw, &img.0, &control);
    assert_eq!(
        listing(&img.0),
        "a\nb\n",
        "privy build's annotations reach the hook"
    );
}

/// What the last RUN step saw in /run/private (names only).
fn listing(image: &str) -> String {
    text(&export(image).file("listing").unwrap())
}

#[test]
fn plain_buildah_bud_with_privys_hooks_dir_is_a_build_stage_and_leaves_no_trace() {
    if !ready() {
        return;
    }
    let bw = BuildWorld::new(CLEAN);
    let control = control(&bw);
    let hooks = bw.hooks_dir();
    let img = Image::new();
    // `--annotation` labels the image; it does not reach the RUN step's
    // config.json, so the `annotated` source must not match (this is why
    // `privy build` passes annotations through the hook's env instead).
    let out = Command::new("buildah")
        .args([
            "bud",
            "--no-cache",
            "--annotation",
            "io.privy.stage=build",
            "--hooks-dir",
        ])
        .arg(&hooks)
        .args(["-t", &img.0, bw.ctx()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = text(&bw.w.log());
    assert!(log.contains(r#""stage":"build""#), "{log}");
    assert!(!contains(&bw.w.log(), &bw.secret));
    assert_clean_image(&bw, &img.0, &control);
    assert_eq!(
        listing(&img.0),
        "b\n",
        "a plain build carries no annotation"
    );
}

/// Guards the L3 reasoning and the layer check above: buildah commits a
/// step only after deleting its container, which runs privy's poststop.
/// Without the poststop entry the empty mountpoint is committed, and the
/// layer listing sees it.
#[test]
fn without_the_poststop_hook_buildah_would_commit_an_empty_run_private() {
    if !ready() {
        return;
    }
    let bw = BuildWorld::new("FROM BASE\nRUN test -e /run/private/b\n");
    let hooks = bw.hooks_dir();
    std::fs::remove_file(hooks.join("privy-poststop.json")).unwrap();
    let img = Image::new();
    run_ok(
        Command::new("buildah")
            .args(["bud", "--no-cache", "--hooks-dir"])
            .arg(&hooks)
            .args(["-t", &img.0, bw.ctx()]),
    );
    let entries = export(&img.0).run_private_entries();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(!export(&img.0).holds(&bw.secret));
}

/// Which findings lines name `path`.
fn named(err: &str, path: &str) -> bool {
    err.lines()
        .any(|l| l.contains("layer sha256:") && l.contains(path) && l.contains("build-only/b"))
}

#[test]
fn privy_build_with_podman_catches_copies_encodings_and_prefixes_and_rm_on_leak_removes_the_image()
{
    if !ready() {
        return;
    }
    let bw = BuildWorld::new(
        "FROM BASE\n\
         RUN cp /run/private/b /leak-cp\n\
         RUN base64 /run/private/b > /leak-b64\n\
         RUN head -c 48 /run/private/b > /leak-head\n\
         RUN xxd -p /run/private/b > /leak-hex\n\
         RUN od -A n -t x1 /run/private/b > /leak-od\n",
    );
    let img = Image::new();
    let out = bw.privy_build(&[
        "--rm-on-leak",
        "--",
        "podman",
        "build",
        "--no-cache",
        &format!("--tag={}", img.0),
        bw.ctx(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("LEAK"), "{err}");
    for (path, kind) in [
        ("leak-cp", "exact"),
        ("leak-b64", "base64"),
        ("leak-head", "substring"),
        ("leak-hex", "hex"),
        ("leak-od", "hex"),
    ] {
        assert!(named(&err, path), "{path} not named:\n{err}");
        assert!(
            err.lines().any(|l| l.contains(path) && l.contains(kind)),
            "{path} not matched as {kind}:\n{err}"
        );
    }
    assert!(!contains(&out.stderr, &bw.secret) && !contains(&out.stdout, &bw.secret));
    assert!(err.contains("removed image"), "{err}");
    assert!(!image_exists(&img.0), "--rm-on-leak removes the image");
}

#[test]
fn privy_build_with_buildah_catches_a_tarball_and_a_build_arg_in_config_and_history() {
    if !ready() {
        return;
    }
    let bw = BuildWorld::new(
        "FROM BASE\n\
         ARG TOKEN\n\
         ENV LEAKED_TOKEN=$TOKEN\n\
         RUN tar czf /leak.tgz -C /run/private b\n",
    );
    let img = Image::new();
    let arg = format!("TOKEN={}", text(&bw.secret));
    let out = bw.privy_build(&[
        "--",
        "buildah",
        "bud",
        "--no-cache",
        "--build-arg",
        &arg,
        "-t",
        &img.0,
        bw.ctx(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.lines()
            .any(|l| named(l, "leak.tgz!/b") && l.contains("gzip")),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.contains("config") && l.contains("build-only/b")),
        "ENV in the config not named:\n{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.contains("history") && l.contains("build-only/b")),
        "build arg in the history not named:\n{err}"
    );
    assert!(image_exists(&img.0), "without --rm-on-leak the image stays");
}

#[test]
fn privy_build_passes_the_engines_failure_status_through_and_does_not_scan() {
    if !ready() {
        return;
    }
    let bw = BuildWorld::new("FROM BASE\nRUN exit 7\n");
    let img = Image::new();
    let direct = Command::new("podman")
        .args(["build", "--no-cache", "-t", &img.0, bw.ctx()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let code = direct.status.code().unwrap();
    assert_ne!(code, 0);
    let out = bw.privy_build(&[
        "--",
        "podman",
        "build",
        "--no-cache",
        "-t",
        &img.0,
        bw.ctx(),
    ]);
    assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("clean"));
}

#[test]
fn privy_build_refuses_bad_input_before_running_the_engine() {
    let w = World::new("", "");
    let ctx = tempfile::tempdir().unwrap();
    let key = ctx.path().join("k");
    std::fs::write(&key, b"k").unwrap();
    // A command that would leave a mark if it ran.
    let mark = ctx.path().join("ran");
    let fake = ctx.path().join("podman");
    std::fs::write(&fake, format!("#!/bin/sh\ntouch {}\n", mark.display())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fake = fake.to_str().unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                format!("--private={}:npmrc", key.display()),
                format!("--socket={}", ctx.path().join("no-daemon.sock").display()),
                "--".into(),
                fake.into(),
                "build".into(),
                ".".into(),
            ],
            "privy daemon",
        ),
        (
            vec![
                "--private=:x".into(),
                "--".into(),
                fake.into(),
                "build".into(),
                ".".into(),
            ],
            "SRC:DEST",
        ),
        (
            vec![
                format!("--private={}:../up", key.display()),
                "--".into(),
                fake.into(),
                "build".into(),
                ".".into(),
            ],
            "destination",
        ),
        (
            vec![
                "--private=/nonexistent/key:k".into(),
                "--".into(),
                fake.into(),
                "build".into(),
                ".".into(),
            ],
            "/nonexistent/key",
        ),
        (
            vec!["--".into(), "docker".into(), "build".into(), ".".into()],
            "not podman or buildah",
        ),
        (
            vec!["--".into(), fake.into(), "run".into(), "x".into()],
            "no build subcommand",
        ),
        (
            vec![
                "--".into(),
                fake.into(),
                "build".into(),
                "--isolation".into(),
                "chroot".into(),
                ".".into(),
            ],
            "chroot",
        ),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = std::iter::once("build")
            .chain(args.iter().map(String::as_str))
            .collect();
        let out = w.privy(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(want) && err.lines().count() == 1,
            "{args:?}: {err}"
        );
        assert!(!Path::new(&mark).exists(), "{args:?} ran the engine");
    }
}

/// A `privy daemon` on a socket in the world's directory, killed on drop.
struct Daemon(std::process::Child);

impl Daemon {
    fn start(w: &World, socket: &Path) -> Daemon {
        let child = Command::new(PRIVY)
            .args(["--config", w.config.to_str().unwrap(), "daemon", "--socket"])
            .arg(socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let d = Daemon(child);
        for _ in 0..200 {
            if socket.exists() {
                return d;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("privy daemon did not create {}", socket.display());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn privy_build_uploads_private_files_as_a_build_ticket_and_catches_their_leak() {
    if !ready() {
        return;
    }
    let bw = BuildWorld::new(
        "FROM BASE\n\
         RUN wc -c < /run/private/npmrc > /size && test -e /run/private/b\n\
         RUN cp /run/private/npmrc /leak-upload\n",
    );
    let socket = bw.w.dir.path().join("privy.sock");
    let mut cfg = std::fs::read_to_string(&bw.w.config).unwrap();
    cfg.push_str(&format!("\n[daemon]\nsocket = {socket:?}\n"));
    std::fs::write(&bw.w.config, cfg).unwrap();
    let _daemon = Daemon::start(&bw.w, &socket);
    let upload = secret("upload");
    let src = bw.w.dir.path().join("npmrc");
    std::fs::write(&src, &upload).unwrap();
    let img = Image::new();
    let private = format!("--private={}:npmrc", src.display());
    let out = bw.privy_build(&[
        &private,
        "--",
        "podman",
        "build",
        "--no-cache",
        "-t",
        &img.0,
        bw.ctx(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.lines().any(|l| l.contains("leak-upload")
            && l.contains("--private/npmrc")
            && l.contains("exact")),
        "{err}"
    );
    assert!(!contains(&out.stderr, &upload) && !contains(&out.stdout, &upload));
    let ex = export(&img.0);
    assert_eq!(
        ex.file("size").map(|s| text(&s).trim().to_string()),
        Some(upload.len().to_string()),
        "the first RUN step read the upload"
    );
    assert_eq!(ex.run_private_entries(), Vec::<String>::new());
}
