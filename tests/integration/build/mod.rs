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

mod buildah;
mod podman;
mod refusals;

use crate::util::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn ready() -> bool {
    crate::util::ready(&["podman", "buildah", "skopeo"])
}

fn base_image() -> &'static str {
    crate::util::busybox_image()
}

fn run_ok(c: &mut Command) -> Output {
    let out = c.stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{c:?} failed: {}", text(&out.stderr));
    out
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
        w.append_config(&format!(
            "[[source]]\nname = \"build-only\"\nplugin = \"host-dir\"\ngrant.dirs = [{bdir:?}]\nwhen = {{ stage = \"build\" }}\n\
             \n[[source]]\nname = \"run-only\"\nplugin = \"host-dir\"\ngrant.dirs = [{rdir:?}]\nwhen = {{ stage = \"run\" }}\n\
             \n[[source]]\nname = \"annotated\"\nplugin = \"host-dir\"\ngrant.dirs = [{adir:?}]\nwhen = {{ annotation = \"io.privy.stage\", value = \"build\" }}\n"
        ));
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

    /// `privy build FLAGS -- podman build --no-cache -t IMAGE CONTEXT`.
    fn podman_build(&self, flags: &[&str], img: &Image) -> Output {
        let engine = [
            "--",
            "podman",
            "build",
            "--no-cache",
            "-t",
            &img.0,
            self.ctx(),
        ];
        self.privy_build(&[flags, &engine[..]].concat())
    }

    fn ctx(&self) -> &str {
        self.ctx.path().to_str().unwrap()
    }

    /// A hooks.d directory with privy's entries, as `privy install` writes them.
    fn hooks_dir(&self) -> PathBuf {
        let d = self.w.dir.path().join("hooks.d");
        self.w.install_hooks_dir(&d);
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

/// What the last RUN step saw in /run/private (names only).
fn listing(image: &str) -> String {
    text(&export(image).file("listing").unwrap())
}

/// Which findings lines name `path`.
fn named(err: &str, path: &str) -> bool {
    err.lines()
        .any(|l| l.contains("layer sha256:") && l.contains(path) && l.contains("build-only/b"))
}
