//! OCI bundles and images with a busybox-static rootfs.

use super::{sha256_file, text, unique_id, World};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub fn busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// The applets every test rootfs links to busybox (busybox-static's `sh`
/// runs the others even without a link; a command run directly needs one).
pub const APPLETS: &[&str] = &[
    "sh",
    "cat",
    "ls",
    "stat",
    "grep",
    "echo",
    "sha256sum",
    "touch",
    "id",
    "sleep",
    "test",
    "head",
    "true",
    "wc",
    "cp",
    "base64",
    "od",
    "xxd",
    "tar",
    "gzip",
    "mkdir",
    "rm",
];

/// A busybox rootfs in `root`: `bin/busybox` and a link per applet.
pub fn busybox_rootfs(root: &Path) {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(busybox().unwrap(), bin.join("busybox")).unwrap();
    for app in APPLETS {
        std::os::unix::fs::symlink("busybox", bin.join(app)).unwrap();
    }
}

/// A busybox rootfs packed as `dir/rootfs.tar`, for `podman|docker import`.
pub fn busybox_tar(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    busybox_rootfs(&root);
    let tar = dir.join("rootfs.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar of the busybox rootfs failed");
    tar
}

/// `localhost/privy-test-busybox:<digest of busybox>` in podman's storage,
/// imported once (and kept, as a cache, between runs).
pub fn busybox_image() -> &'static str {
    static IMG: OnceLock<String> = OnceLock::new();
    IMG.get_or_init(|| {
        let tag = format!(
            "localhost/privy-test-busybox:{}",
            &sha256_file(&busybox().unwrap())[..16]
        );
        let exists = Command::new("podman")
            .args(["image", "exists", &tag])
            .status()
            .unwrap();
        if exists.success() {
            return tag;
        }
        let d = tempfile::tempdir().unwrap();
        let tar = busybox_tar(d.path());
        let out = Command::new("podman")
            .args(["import", "--change", "CMD [\"/bin/sh\"]"])
            .arg(&tar)
            .arg(&tag)
            .output()
            .unwrap();
        assert!(out.status.success(), "podman import: {}", text(&out.stderr));
        tag
    })
}

/// An OCI bundle with a busybox rootfs that runs `script` under `sh -c`.
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub id: String,
}

impl Bundle {
    pub fn new(script: &str) -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("privy-bundle-")
            .tempdir()
            .unwrap();
        let rootfs = dir.path().join("rootfs");
        for d in ["proc", "dev"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        busybox_rootfs(&rootfs);
        let spec = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": ["sh", "-c", script],
                "env": ["PATH=/bin"],
                "cwd": "/",
                "capabilities": {
                    "bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]
                },
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs", "readonly": false},
            "hostname": "privy-test",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}
            ],
            "linux": {
                "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"}]
            }
        });
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::to_vec_pretty(&spec).unwrap(),
        )
        .unwrap();
        Bundle {
            dir,
            id: unique_id("c"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Edit config.json.
    pub fn edit(&self, f: impl FnOnce(&mut serde_json::Value)) {
        let p = self.path().join("config.json");
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        f(&mut v);
        std::fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    }

    /// `privy install --bundle` with the world's config.
    pub fn install(&self, w: &World) {
        let out = w.privy(&["install", "--bundle", self.path().to_str().unwrap()]);
        assert!(
            out.status.success(),
            "install failed: {}",
            text(&out.stderr)
        );
    }

    /// `RUNTIME run` (foreground), bounded to 120 s.
    pub fn run(&self, runtime: &str) -> Output {
        let out = Command::new("timeout")
            .args(["120", runtime, "run", "-b"])
            .arg(self.path())
            .arg(&self.id)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        // A container that failed to start may leave state behind.
        let _ = Command::new(runtime)
            .args(["delete", "-f", &self.id])
            .output();
        out
    }

    /// `RUNTIME run -d`: a container that keeps running (its script must
    /// not end), deleted when the result drops. Panics if it did not start.
    pub fn run_detached(&self, runtime: &str) -> Running {
        let ok = Command::new(runtime)
            .args(["run", "-d", "-b"])
            .arg(self.path())
            .arg(&self.id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // The container inherits the runtime's stdio: a pipe would never close.
            .stderr(Stdio::null())
            .status()
            .unwrap();
        let mut running = Running {
            runtime: runtime.to_owned(),
            id: self.id.clone(),
            pid: 0,
        };
        assert!(ok.success(), "{runtime} run -d failed");
        let st: serde_json::Value = serde_json::from_slice(
            &Command::new(runtime)
                .args(["state", &self.id])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        running.pid = st["pid"].as_i64().unwrap() as i32;
        running
    }
}

/// A container started by [`Bundle::run_detached`]; `delete -f` on drop.
pub struct Running {
    pub runtime: String,
    pub id: String,
    /// Its init's pid, on the host.
    pub pid: i32,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new(&self.runtime)
            .args(["delete", "-f", &self.id])
            .output();
    }
}
