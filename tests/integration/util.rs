//! Helpers shared by the integration tests: temp dirs, configs, bundles,
//! secrets, and running the `privy` binary and the runtimes.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

pub const PRIVY: &str = env!("CARGO_BIN_EXE_privy");

/// The privy binary's canonical path, as `install` records it.
pub fn privy_canonical() -> String {
    std::fs::canonicalize(PRIVY).unwrap().display().to_string()
}

/// A guest component built from `plugins/` (fixtures included).
pub fn guest(stem: &str) -> PathBuf {
    Path::new(privy::plugin::GUEST_DIR).join(format!("{stem}.wasm"))
}

pub fn sha256_file(p: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()))
}

/// Random bytes that cannot occur by chance anywhere else, printable so a
/// substring search is meaningful. Never printed by the tests.
pub fn secret(tag: &str) -> Vec<u8> {
    let mut r = [0u8; 24];
    getrandom::getrandom(&mut r).unwrap();
    format!("PRIVY-TEST-{tag}-{}", hex::encode(r)).into_bytes()
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every regular file under `dir` whose bytes contain `needle` (symlinks not followed).
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() && std::fs::read(&p).is_ok_and(|b| contains(&b, needle)) {
                hits.push(p);
            }
        }
    }
    hits
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique container id for this test process.
pub fn unique_id(prefix: &str) -> String {
    format!(
        "privy-test-{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A component cache shared by every test in this process, so each plugin
/// is compiled once (a debug Cranelift takes about a second a plugin).
pub fn shared_cache() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("privy-test-cache-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        d
    })
}

/// The plugin host every in-process test shares (one engine, one cache).
pub fn plugin_host() -> &'static privy::plugin::PluginHost {
    static H: OnceLock<privy::plugin::PluginHost> = OnceLock::new();
    H.get_or_init(|| privy::plugin::PluginHost::new(shared_cache()).unwrap())
}

/// One sandboxed `fetch` exactly as the hook makes it, on its own
/// current-thread runtime, with a bare request for container "c".
pub fn call_plugin(
    host: &privy::plugin::PluginHost,
    plugin: &privy::plugin::Plugin,
    source: &str,
    grant: &privy::config::Grant,
    config: &std::collections::BTreeMap<String, String>,
    limits: &privy::config::Limits,
) -> Result<Vec<privy::plugin::RawFile>, privy::plugin::PluginError> {
    let request = privy::plugin::PluginRequest::bare("c", privy::request::Stage::Run);
    let call = privy::plugin::Call {
        source,
        grant,
        config,
        limits,
        request: &request,
        daemon: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(host.fetch(plugin, call))
}

/// One test's private world: a config whose state, log and audit key live
/// in a temp dir, and a host private directory.
pub struct World {
    pub dir: tempfile::TempDir,
    pub private_d: PathBuf,
    pub config: PathBuf,
}

impl World {
    /// A world whose config is the default `host-dir` source plus `extra` TOML.
    pub fn new(extra_top: &str, extra_sources: &str) -> World {
        let dir = tempfile::Builder::new()
            .prefix("privy-world-")
            .tempdir()
            .unwrap();
        let private_d = dir.path().join("private.d");
        std::fs::create_dir_all(&private_d).unwrap();
        let config = dir.path().join("privy.toml");
        let text = format!(
            "cache_dir = {cache:?}\nstate_dir = {state:?}\nlog_file = {log:?}\naudit_key = {key:?}\n{extra_top}\n\
             [[source]]\nname = \"host-dir\"\nplugin = \"host-dir\"\ngrant.dirs = [{pd:?}]\n{extra_sources}\n",
            cache = shared_cache(),
            state = dir.path().join("state"),
            log = dir.path().join("privy.log"),
            key = dir.path().join("audit.key"),
            pd = private_d,
        );
        std::fs::write(&config, text).unwrap();
        World {
            dir,
            private_d,
            config,
        }
    }

    /// Put a private file in the host directory.
    pub fn put(&self, rel: &str, data: &[u8], mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.private_d.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    pub fn log(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("privy.log")).unwrap_or_default()
    }

    /// Run `privy --config <ours> ARGS`.
    pub fn privy(&self, args: &[&str]) -> Output {
        privy_with_stdin(
            &[&["--config", self.config.to_str().unwrap()], args].concat(),
            b"",
        )
    }
}

/// Run the privy binary with `stdin`.
pub fn privy_with_stdin(args: &[&str], stdin: &[u8]) -> Output {
    output_with_stdin(Command::new(PRIVY).args(args), stdin)
}

/// Run `cmd` with `stdin`, collecting stdout and stderr.
pub fn output_with_stdin(cmd: &mut Command, stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut c = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin).unwrap();
    c.wait_with_output().unwrap()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Is `name` on PATH?
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether an end-to-end test can run; prints why not. With
/// `PRIVY_E2E_REQUIRED=1` a missing piece fails the test instead.
pub fn e2e_ready(runtime: &str) -> bool {
    let why = if !is_root() {
        Some("not root".to_string())
    } else if which(runtime).is_none() {
        Some(format!("{runtime} is not installed"))
    } else if busybox().is_none() {
        Some("busybox (static) is not installed".to_string())
    } else {
        None
    };
    match why {
        None => true,
        Some(w) if std::env::var("PRIVY_E2E_REQUIRED").as_deref() == Ok("1") => {
            panic!("end-to-end test cannot run ({w}) but PRIVY_E2E_REQUIRED=1")
        }
        Some(w) => {
            eprintln!("SKIP: {w}; end-to-end test with {runtime} did not run");
            false
        }
    }
}

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
}
