//! `deploy/kubernetes/`: every manifest validated offline against the
//! Kubernetes JSON schemas (`kubernetes-validate --strict`, from PyPI); the
//! shipped privy config parsed by privy itself; the containerd fragments
//! parsed; and the node image built from its Containerfile with local parts
//! only, its installer run against a node's directories (containerd 1.6,
//! containerd 2.x and CRI-O layouts) to see what it writes and refuses.

use crate::util::{self, text};
use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// The manifests a cluster applies: every `.yaml` but kustomize's own file.
fn manifests() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(deploy())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    v.sort();
    v
}

fn validator() -> Option<PathBuf> {
    let found = util::which("kubernetes-validate");
    if found.is_none() {
        let why = "kubernetes-validate (pip install kubernetes-validate==1.37.0) is not installed";
        if std::env::var("PRIVY_E2E_REQUIRED").as_deref() == Ok("1") {
            panic!("{why} but PRIVY_E2E_REQUIRED=1");
        }
        eprintln!("SKIP: {why}; manifests not validated");
    }
    found
}

#[test]
fn every_manifest_is_valid_against_the_kubernetes_schemas() {
    let Some(v) = validator() else { return };
    let files = manifests();
    assert!(files.len() >= 5, "{files:?}");
    for f in &files {
        let out = Command::new(&v)
            .args(["--strict", "--quiet"])
            .arg(f)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}{}",
            f.display(),
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    // The validator does refuse what a cluster would refuse.
    let bad = tempfile::tempdir().unwrap();
    let daemonset = std::fs::read_to_string(deploy().join("daemonset.yaml")).unwrap();
    let broken = bad.path().join("daemonset.yaml");
    std::fs::write(&broken, daemonset.replace("hostPID: true", "hostPid: true")).unwrap();
    let out = Command::new(&v)
        .args(["--strict", "--quiet"])
        .arg(&broken)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a misspelt field passed validation");
    // kustomization.yaml applies every manifest but the example pod.
    let k = std::fs::read_to_string(deploy().join("kustomization.yaml")).unwrap();
    for f in files {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            k.contains(&format!("- {name}")),
            name != "example-pod.yaml",
            "kustomization.yaml and {name}"
        );
    }
}

#[test]
fn shipped_config_is_valid_and_scopes_the_vault_source_to_the_payments_namespace() {
    let path = deploy().join("privy.toml");
    let cfg = privy::config::Config::parse(&std::fs::read_to_string(&path).unwrap(), &path)
        .unwrap_or_else(|e| panic!("{e}"));
    let vault = cfg.sources.iter().find(|s| s.plugin == "vault").unwrap();
    let w = vault.when.as_ref().unwrap();
    assert_eq!(w.namespace.as_deref(), Some("payments"));
    assert_eq!(w.image.as_deref(), Some("registry.example.com/payments/*"));
    // The example pod is what that source serves.
    let pod = std::fs::read_to_string(deploy().join("example-pod.yaml")).unwrap();
    for want in [
        "namespace: payments",
        "io.privy.vault: payments/db",
        "image: registry.example.com/payments/",
        "runtimeClassName: privy",
        "/run/private/payments/db/password",
    ] {
        assert!(pod.contains(want), "example-pod.yaml lacks {want}");
    }
}

#[test]
fn containerd_fragments_name_the_shim_and_pass_privy_annotations() {
    for (file, plugin) in [
        ("privy-v2.toml", "io.containerd.grpc.v1.cri"),
        ("privy-v3.toml", "io.containerd.cri.v1.runtime"),
    ] {
        let t: toml::Value = toml::from_str(
            &std::fs::read_to_string(deploy().join("containerd").join(file)).unwrap(),
        )
        .unwrap_or_else(|e| panic!("{file}: {e}"));
        let h = &t["plugins"][plugin]["containerd"]["runtimes"]["privy"];
        assert_eq!(
            h["runtime_type"].as_str(),
            Some("io.containerd.runc.v2"),
            "{file}"
        );
        assert_eq!(
            h["options"]["BinaryName"].as_str(),
            Some("/usr/local/bin/privy-shim"),
            "{file}"
        );
        for k in ["pod_annotations", "container_annotations"] {
            assert_eq!(
                h[k].as_array().unwrap()[0].as_str(),
                Some("io.privy.*"),
                "{file} {k}"
            );
        }
    }
}

/// The node image, built once per test run from the test's binary
/// (stripped: a debug build is some 350 MB of symbols), and that binary.
fn node_image() -> Option<(&'static str, &'static Path)> {
    static IMG: std::sync::OnceLock<(String, PathBuf, tempfile::TempDir)> =
        std::sync::OnceLock::new();
    if !util::e2e_ready("runc") {
        return None;
    }
    if util::which("buildah").is_none() || util::which("strip").is_none() {
        let why = "buildah or strip (binutils) is not installed";
        if std::env::var("PRIVY_E2E_REQUIRED").as_deref() == Ok("1") {
            panic!("{why} but PRIVY_E2E_REQUIRED=1");
        }
        eprintln!("SKIP: {why}; node image not built");
        return None;
    }
    let (tag, bin, _) = IMG.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("privy");
        let st = Command::new("strip")
            .arg("-o")
            .arg(&bin)
            .arg(util::PRIVY)
            .status()
            .unwrap();
        assert!(st.success(), "strip failed");
        // The thin hook, next to it, as cargo builds both.
        let thin = Path::new(util::PRIVY).with_file_name("privy-hook");
        let st = Command::new("strip")
            .arg("-o")
            .arg(dir.path().join("privy-hook"))
            .arg(&thin)
            .status()
            .unwrap();
        assert!(st.success(), "strip {} failed", thin.display());
        // One tag, replaced on every run, so runs do not pile up images.
        let tag = "localhost/privy-node-test:latest".to_string();
        let _ = Command::new("podman").args(["rmi", "-f", &tag]).output();
        let out = Command::new(deploy().join("build-image"))
            .arg(&bin)
            .arg(&tag)
            .output()
            .unwrap();
        assert!(out.status.success(), "build-image: {}", text(&out.stderr));
        (tag, bin, dir)
    });
    Some((tag.as_str(), bin.as_path()))
}

/// A node's directories as the DaemonSet mounts them, under one temp dir.
struct FakeNode {
    dir: tempfile::TempDir,
}

impl FakeNode {
    fn new(containerd_config: Option<&str>) -> FakeNode {
        let dir = tempfile::Builder::new()
            .prefix("privy-fake-node-")
            .tempdir()
            .unwrap();
        for d in [
            "bin",
            "etc-privy",
            "cache",
            "etc-containerd",
            "hooks.d",
            "crio.d",
            "config",
            "vault",
        ] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::copy(
            deploy().join("privy.toml"),
            dir.path().join("config/privy.toml"),
        )
        .unwrap();
        std::fs::write(dir.path().join("vault/token"), "node-token-placeholder").unwrap();
        if let Some(c) = containerd_config {
            std::fs::write(dir.path().join("etc-containerd/config.toml"), c).unwrap();
        }
        FakeNode { dir }
    }

    fn p(&self, s: &str) -> PathBuf {
        self.dir.path().join(s)
    }

    /// Run the installer in the image, as the init container does.
    fn install(&self, image: &str, runtime: &str) -> std::process::Output {
        let mut cmd = Command::new("podman");
        cmd.args(["run", "--rm", "--network", "none", "-e"])
            .arg(format!("PRIVY_RUNTIME={runtime}"));
        for (src, dst) in [
            ("config", "/config"),
            ("vault", "/vault"),
            ("bin", "/host/usr/local/bin"),
            ("etc-privy", "/etc/privy"),
            ("cache", "/var/cache/privy"),
            ("etc-containerd", "/host/etc/containerd"),
            ("hooks.d", "/host/etc/containers/oci/hooks.d"),
            ("crio.d", "/host/etc/crio/crio.conf.d"),
        ] {
            cmd.arg("-v")
                .arg(format!("{}:{dst}", self.p(src).display()));
        }
        cmd.args([
            "--entrypoint",
            "/bin/sh",
            image,
            "/usr/share/privy/node-install.sh",
        ])
        .output()
        .unwrap()
    }
}

const CONTAINERD_16: &str = r#"version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = true
"#;

#[test]
fn node_image_builds_offline_and_installs_privy_for_containerd_1_6() {
    let Some((image, bin)) = node_image() else {
        return;
    };
    let out = Command::new("podman")
        .args(["run", "--rm", "--network", "none", image, "--version"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "privy in the image: {}",
        text(&out.stderr)
    );
    let node = FakeNode::new(Some(CONTAINERD_16));
    for round in 0..2 {
        let out = node.install(image, "containerd");
        assert!(
            out.status.success(),
            "round {round}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    assert_eq!(
        util::sha256_file(&node.p("bin/privy")),
        util::sha256_file(bin)
    );
    assert_eq!(
        std::fs::read_link(node.p("bin/privy-shim")).unwrap(),
        Path::new("privy")
    );
    assert_eq!(
        util::sha256_file(&node.p("bin/privy-hook")),
        util::sha256_file(&bin.with_file_name("privy-hook")),
        "the thin hook is installed next to privy"
    );
    assert_eq!(
        std::fs::read(node.p("etc-privy/privy.toml")).unwrap(),
        std::fs::read(deploy().join("privy.toml")).unwrap()
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(node.p("etc-privy/vault/token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the node's token is not root-only");
    assert!(
        std::fs::read_dir(node.p("cache")).unwrap().count() > 0,
        "the installer did not warm the plugin cache"
    );
    // Installed twice, the handler is there once, and containerd's own
    // settings are kept.
    let cfg = std::fs::read_to_string(node.p("etc-containerd/config.toml")).unwrap();
    assert_eq!(cfg.matches("runtimes.privy]").count(), 1, "{cfg}");
    let t: toml::Value = toml::from_str(&cfg).unwrap_or_else(|e| panic!("{e}\n{cfg}"));
    let rts = &t["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"];
    assert_eq!(
        rts["runc"]["options"]["SystemdCgroup"].as_bool(),
        Some(true)
    );
    assert_eq!(
        rts["privy"]["options"]["BinaryName"].as_str(),
        Some("/usr/local/bin/privy-shim")
    );
}

#[test]
fn installer_refuses_containerd_configs_it_would_break_and_installs_for_2_x_and_cri_o() {
    let Some((image, _)) = node_image() else {
        return;
    };
    // No runc table: naming privy's runtime would replace containerd's list.
    for (cfg, says) in [
        ("version = 2\n", "defines no runtimes.runc table"),
        ("", "no /etc/containerd/config.toml"),
        ("version = 3\n", "does not import /etc/containerd/conf.d"),
    ] {
        let node = FakeNode::new((!cfg.is_empty()).then_some(cfg));
        let out = node.install(image, "containerd");
        assert!(!out.status.success(), "{cfg:?} was accepted");
        assert!(
            text(&out.stderr).contains(says),
            "{cfg:?}: {}",
            text(&out.stderr)
        );
        if !cfg.is_empty() {
            let after = std::fs::read_to_string(node.p("etc-containerd/config.toml")).unwrap();
            assert_eq!(after, cfg, "a refused config was changed");
        }
    }
    // containerd 2.x: a conf.d drop-in.
    let node = FakeNode::new(Some(
        "version = 3\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n",
    ));
    let out = node.install(image, "containerd");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read(node.p("etc-containerd/conf.d/privy.toml")).unwrap(),
        std::fs::read(deploy().join("containerd/privy-v3.toml")).unwrap()
    );
    // CRI-O: hooks.d entries naming the host's binary, and the drop-in.
    let node = FakeNode::new(None);
    let out = node.install(image, "cri-o");
    assert!(out.status.success(), "{}", text(&out.stderr));
    for f in privy::oci::install::HOOKS_D_FILES {
        let hook: serde_json::Value =
            serde_json::from_slice(&std::fs::read(node.p("hooks.d").join(f)).unwrap()).unwrap();
        assert_eq!(hook["hook"]["path"], "/usr/local/bin/privy-hook", "{f}");
    }
    assert!(node.p("crio.d/10-privy.conf").exists());
}
