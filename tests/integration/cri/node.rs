//! One Kubernetes-style node per test binary run: Debian's containerd 1.6
//! with its CRI plugin, its own root, state, socket and `config.toml`, a
//! runtime handler `privy` whose runc binary is privy's shim, the plain
//! `runc` handler beside it, local images built with buildah from busybox,
//! and a real OpenBao dev server for the `vault` sources.
//!
//! The node is started by the first test that asks for it and shared by
//! every test after it; pods are independent (each test uses its own
//! namespaces and names). It is torn down when the test process exits
//! (an `atexit` handler: every pod removed through the CRI, containerd
//! stopped, every shim and container process it left killed by pid, every
//! mount under its directory detached, the directory removed), and the
//! leftovers of a run that was killed outright are torn down the same way
//! by the next run.
//!
//! Machine quirks handled here rather than in CI:
//! - `restrict_oom_score_adj = true`: these machines lack
//!   CAP_SYS_RESOURCE, so a pod's negative OOM score (the sandbox's -998)
//!   cannot be set and runc fails with `can't get final child's PID from
//!   pipe: EOF`.
//! - The sandbox ("pause") image must be local: one is built from busybox
//!   with buildah (entrypoint a long sleep) and imported with
//!   `ctr -n k8s.io images import`; `sandbox_image` names it.
//! - No CNI: pods use the node's network (`NamespaceOption.network =
//!   NODE`) and set no hostname.
//! - Hybrid cgroups: `.ci/run` mounts the v1 hugetlb hierarchy (for crun)
//!   before the tests; containerd's `disable_hugetlb_controller` (its
//!   default) keeps hugetlb limits out of the pods' specs.

use crate::bao::Bao;
use crate::util::{self, text};
use k8s_cri::v1 as cri;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

type Channel = tonic::transport::Channel;
pub type RuntimeClient = cri::runtime_service_client::RuntimeServiceClient<Channel>;
pub type ImageClient = cri::image_service_client::ImageServiceClient<Channel>;

/// The images every node has, built once per busybox and kept in buildah's
/// storage between runs.
pub const PAUSE_IMAGE: &str = "localhost/privy-cri/pause:1";
/// An ordinary workload image (busybox; entrypoint a long sleep).
pub const APP_IMAGE: &str = "localhost/privy-cri/other/app:1";
/// The same image under the repository the `payments` source allows.
pub const PAYMENTS_IMAGE: &str = "localhost/privy-cri/payments/app:1";
/// A hostile image: `/run/private` is a symlink to [`BAIT`], a host path.
pub const HOSTILE_TARGET_IMAGE: &str = "localhost/privy-cri/hostile/target-symlink:1";
/// A hostile image: `/run` is a symlink to `../..`.
pub const HOSTILE_RUN_IMAGE: &str = "localhost/privy-cri/hostile/run-dotdot:1";
/// The host directory the hostile image's `/run/private` points at; it
/// exists on the host (so a write that escaped would land in it) and not
/// in the image.
pub const BAIT: &str = "/tmp/privy-cri-bait";

/// Runtime handlers the node's CRI plugin knows.
pub const PRIVY: &str = "privy";
pub const RUNC: &str = "runc";

/// Where every test node's directory lives: `<tmp>/privy-cri-<pid>`.
const DIR_PREFIX: &str = "privy-cri-";

pub struct Node {
    pub dir: PathBuf,
    /// The privy config every hook on this node reads (`PRIVY_CONFIG` in
    /// containerd's environment reaches the shim, which passes it on).
    pub config: PathBuf,
    pub privy_log: PathBuf,
    pub privy_state: PathBuf,
    /// containerd's state directory (bundles, rootfs mounts).
    pub state: PathBuf,
    /// The host-dir source's directory (`entitlement/cert.pem`).
    pub private_d: PathBuf,
    /// `entitlement/cert.pem`: every pod in a namespace `ent-*` gets it.
    pub cert: Vec<u8>,
    /// `blue/team.key`: the `app` container of a pod annotated
    /// `io.privy.team=blue*` gets it.
    pub blue_key: Vec<u8>,
    /// `annotated/licence.key`: every container of a pod annotated
    /// `io.privy.entitled` gets it (a condition without pod fields, so the
    /// pod's sandbox would match it too, but for the sandbox rule).
    pub licence: Vec<u8>,
    /// OpenBao's `payments/db`: `password` and `user`.
    pub db_password: Vec<u8>,
    pub db_user: Vec<u8>,
    /// OpenBao's `team/api`: `token`.
    pub team_token: Vec<u8>,
    pub bao_token: String,
    bao_dir: PathBuf,
    containerd: i32,
    rt: tokio::runtime::Runtime,
    runtime: RuntimeClient,
    images: ImageClient,
}

static NODE: OnceLock<Result<Node, String>> = OnceLock::new();

/// The node, started on first use; `None` (with a `SKIP:` line) where a
/// part is missing, a failure under `PRIVY_E2E_REQUIRED=1`.
pub fn node() -> Option<&'static Node> {
    if let Some(why) = missing() {
        if std::env::var("PRIVY_E2E_REQUIRED").as_deref() == Ok("1") {
            panic!("CRI test cannot run ({why}) but PRIVY_E2E_REQUIRED=1");
        }
        eprintln!("SKIP: {why}; CRI test did not run");
        return None;
    }
    match NODE.get_or_init(Node::start) {
        Ok(n) => Some(n),
        Err(e) => panic!("the test node did not start: {e}"),
    }
}

/// The privy binary the node's shim and hooks run: `PRIVY_CRI_BIN`, or
/// the one cargo built for these tests.
pub fn privy_binary() -> PathBuf {
    std::env::var_os("PRIVY_CRI_BIN")
        .map(|b| std::fs::canonicalize(b).expect("PRIVY_CRI_BIN"))
        .unwrap_or_else(|| PathBuf::from(util::PRIVY))
}

fn missing() -> Option<String> {
    if !util::is_root() {
        return Some("not root".into());
    }
    for bin in [
        "containerd",
        "containerd-shim-runc-v2",
        "ctr",
        "runc",
        "buildah",
        "podman",
    ] {
        if util::which(bin).is_none() {
            return Some(format!(
                "{bin} is not installed (scripts/setup installs containerd, runc, buildah and podman)"
            ));
        }
    }
    if util::busybox().is_none() {
        return Some("busybox (static) is not installed".into());
    }
    if crate::bao::bao_binary().is_none() {
        return Some("OpenBao (`bao`) is not installed".into());
    }
    None
}

impl Node {
    fn start() -> Result<Node, String> {
        reap_stale();
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}", std::process::id()));
        let started = Self::start_in(&dir);
        if started.is_err() {
            // Whatever came up (containerd, shims, mounts) goes again.
            stop_bao();
            reap(&dir);
        }
        started
    }

    fn start_in(dir: &Path) -> Result<Node, String> {
        let began = Instant::now();
        let p = |s: &str| dir.join(s);
        for d in [
            "root",
            "state",
            "runc",
            "bin",
            "private.d",
            "blue.d",
            "annotated.d",
            "logs",
            "images",
        ] {
            std::fs::create_dir_all(p(d)).map_err(|e| format!("{}: {e}", p(d).display()))?;
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        // Called by this name, the privy binary is the shim (containerd's
        // BinaryName takes no arguments). scripts/bench-cri points
        // PRIVY_CRI_BIN at the release build.
        let privy = privy_binary();
        std::os::unix::fs::symlink(&privy, p("bin/privy-shim")).unwrap();
        std::fs::create_dir_all(BAIT).unwrap();

        let cert = util::secret("cri-cert");
        let blue_key = util::secret("cri-blue");
        let licence = util::secret("cri-licence");
        put(&p("private.d/entitlement/cert.pem"), &cert, 0o640);
        put(&p("blue.d/blue/team.key"), &blue_key, 0o600);
        put(&p("annotated.d/annotated/licence.key"), &licence, 0o600);
        let images = build_images(&p("images"))?;

        // containerd and OpenBao die with the thread that started them
        // (PR_SET_PDEATHSIG): start them from one that lives as long as
        // the process, so a killed test run leaves neither behind.
        // The privy handler is appended to config.toml exactly as README
        // and the installer tell an operator of containerd 1.6 to do.
        let config = containerd_config(dir) + "\n" + &privy_fragment(dir);
        std::fs::write(p("containerd.toml"), config).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let keeper_dir = dir.to_owned();
        std::thread::Builder::new()
            .name("privy-cri-node".into())
            .spawn(move || {
                let bao = Bao::start();
                let containerd = spawn_containerd(&keeper_dir);
                tx.send((bao, containerd)).unwrap();
                loop {
                    std::thread::park();
                }
            })
            .unwrap();
        let (bao, containerd) = rx.recv().unwrap();
        let bao_token = bao.token.clone();
        let bao_dir = bao.path().to_owned();
        let bao = BAO
            .get_or_init(|| std::sync::Mutex::new(bao))
            .lock()
            .unwrap();
        let containerd = containerd?;

        let db_password = util::secret("cri-db-password");
        let db_user = util::secret("cri-db-user");
        let team_token = util::secret("cri-team-token");
        bao.put(
            "secret",
            "payments/db",
            &[("password", &db_password), ("user", &db_user)],
        );
        bao.put("secret", "team/api", &[("token", &team_token)]);
        std::fs::write(p("privy.toml"), privy_config(dir, &bao)).unwrap();
        drop(bao);
        // Check the config and compile every plugin into the cache now, as
        // `privy install` does on a node, so no pod pays for Cranelift.
        let out = Command::new(&privy)
            .arg("--config")
            .arg(p("privy.toml"))
            .args(["config", "check"])
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(format!("privy config check: {}", text(&out.stderr)));
        }

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let socket = p("containerd.sock");
        let channel = rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok(c) = connect(&socket).await {
                    let mut v = RuntimeClient::new(c.clone());
                    if v.version(cri::VersionRequest::default()).await.is_ok() {
                        return Ok(c);
                    }
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "containerd's CRI did not answer within 60 s; its log: {}",
                        std::fs::read_to_string(p("containerd.log")).unwrap_or_default()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })?;
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&socket)
            .args(["-n", "k8s.io", "images", "import"])
            .arg(&images)
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(format!("ctr images import: {}", text(&out.stderr)));
        }
        let node = Node {
            config: p("privy.toml"),
            privy_log: p("privy.log"),
            privy_state: p("privy-state"),
            state: p("state"),
            private_d: p("private.d"),
            dir: dir.to_owned(),
            cert,
            blue_key,
            licence,
            db_password,
            db_user,
            team_token,
            bao_token,
            bao_dir,
            containerd,
            runtime: RuntimeClient::new(channel.clone()),
            images: ImageClient::new(channel),
            rt,
        };
        for img in [PAUSE_IMAGE, APP_IMAGE, PAYMENTS_IMAGE] {
            node.wait_image(img)?;
        }
        eprintln!(
            "privy CRI test node: containerd {} up in {:.1} s",
            dir.display(),
            began.elapsed().as_secs_f64()
        );
        // From here on the node is torn down at exit whatever happens.
        // SAFETY: registering a plain extern "C" fn with no captured state.
        unsafe { libc::atexit(at_exit) };
        Ok(node)
    }

    /// Run a future on the node's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The CRI runtime service (a cheap clone of one channel).
    pub fn runtime(&self) -> RuntimeClient {
        self.runtime.clone()
    }

    fn wait_image(&self, image: &str) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let st = self.block_on(self.images.clone().image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                verbose: false,
            }));
            if st.is_ok_and(|r| r.into_inner().image.is_some()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("image {image} not seen by the CRI after import"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Directories that hold a secret by design: the host-dir sources'
    /// directories and OpenBao's (its token file).
    pub fn by_design(&self) -> Vec<PathBuf> {
        vec![
            self.private_d.clone(),
            self.dir.join("blue.d"),
            self.dir.join("annotated.d"),
            self.bao_dir.clone(),
        ]
    }

    /// Every pod sandbox the node has, through the CRI.
    pub fn pods(&self) -> Vec<cri::PodSandbox> {
        self.block_on(
            self.runtime()
                .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }),
        )
        .map(|r| r.into_inner().items)
        .unwrap_or_default()
    }

    /// Tear down: pods through the CRI, then containerd, then whatever it
    /// left (processes by pid, mounts, the directory).
    fn shutdown(&self) {
        for pod in self.pods() {
            let mut rt = self.runtime();
            let id = pod.id.clone();
            let _ = self.block_on(async move {
                tokio::time::timeout(Duration::from_secs(20), async {
                    let _ = rt
                        .stop_pod_sandbox(cri::StopPodSandboxRequest {
                            pod_sandbox_id: id.clone(),
                        })
                        .await;
                    let _ = rt
                        .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
                        .await;
                })
                .await
            });
        }
        let _ = kill(self.containerd);
        stop_bao();
        reap(&self.dir);
        let _ = std::fs::remove_dir_all(&self.bao_dir);
        // Only while empty: anything in it is evidence of an escape.
        let _ = std::fs::remove_dir(BAIT);
    }
}

/// The node's OpenBao, kept for the process's life.
static BAO: OnceLock<std::sync::Mutex<Bao>> = OnceLock::new();

fn stop_bao() {
    if let Some(b) = BAO.get() {
        if let Ok(mut b) = b.lock() {
            b.stop();
        }
    }
}

extern "C" fn at_exit() {
    let _ = std::panic::catch_unwind(|| {
        if let Some(Ok(n)) = NODE.get() {
            n.shutdown();
        }
    });
}

fn put(path: &Path, data: &[u8], mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

async fn connect(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let socket = socket.to_owned();
    tonic::transport::Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
}

/// The runtime handler `privy` exactly as deploy/kubernetes/ ships it for
/// containerd 1.6 (README quotes the same file), with this node's path
/// for the shim and runc's state kept in the node's directory.
fn privy_fragment(dir: &Path) -> String {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/kubernetes/containerd/privy-v2.toml"
    ))
    .unwrap();
    let d = dir.display();
    let shim = r#"BinaryName = "/usr/local/bin/privy-shim""#;
    assert!(
        shipped.contains(shim),
        "the shipped fragment changed: {shim} not found"
    );
    shipped.replace(
        shim,
        &format!("BinaryName = \"{d}/bin/privy-shim\"\n    Root = \"{d}/runc\""),
    )
}

/// containerd's `config.toml` (version 2, the 1.6 syntax), without the
/// `privy` handler.
fn containerd_config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
# Plugins that would touch the host outside this node's directory, or
# that need kernel features this machine lacks.
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  level = "info"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # This machine lacks CAP_SYS_RESOURCE: a negative OOM score adjustment
  # fails runc with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/cni"
    conf_dir = "{d}/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{d}/runc"
"#
    )
}

/// The node's privy config: sources scoped by namespace, image, container
/// name and pod annotations.
fn privy_config(dir: &Path, bao: &Bao) -> String {
    let d = dir.display();
    let vault = |name: &str, when: &str, allow: &str| {
        format!(
            r#"
[[source]]
name = "{name}"
plugin = "vault"
when = {when}
[source.grant]
hosts = ["{host}"]
files = ["{token}"]
[source.config]
address = "{address}"
token_file = "{token}"
allow = "{allow}"
"#,
            host = bao.host(),
            token = bao.token_file().display(),
            address = bao.address(),
        )
    };
    format!(
        r#"cache_dir = "{cache}"
state_dir = "{d}/privy-state"
log_file = "{d}/privy.log"
audit_key = "{d}/audit.key"

# Entitlements for every pod in a namespace ent-*.
[[source]]
name = "entitlements"
plugin = "host-dir"
when = {{ namespace = "ent-*" }}
grant.dirs = ["{d}/private.d"]

# A licence for every container of a pod annotated io.privy.entitled.
[[source]]
name = "annotated"
plugin = "host-dir"
when = {{ annotation = "io.privy.entitled" }}
grant.dirs = ["{d}/annotated.d"]

# A team key for the `app` container of pods annotated io.privy.team=blue*.
[[source]]
name = "blue-team"
plugin = "host-dir"
when = {{ container = "app", pod_annotations = {{ "io.privy.team" = "blue*" }} }}
grant.dirs = ["{d}/blue.d"]
{payments}{team}"#,
        cache = util::shared_cache().display(),
        payments = vault(
            "payments",
            r#"{ namespace = "payments", image = "localhost/privy-cri/payments/*", annotation = "io.privy.vault" }"#,
            "payments/*",
        ),
        team = vault(
            "team-vault",
            r#"{ namespace = "team-*", annotation = "io.privy.vault" }"#,
            "team/*",
        ),
    )
}

fn spawn_containerd(dir: &Path) -> Result<i32, String> {
    use std::os::unix::process::CommandExt;
    let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
    let mut cmd = Command::new("containerd");
    cmd.arg("--config")
        .arg(dir.join("containerd.toml"))
        .env("PRIVY_CONFIG", dir.join("privy.toml"))
        .env_remove("PRIVY_SOCKET")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    // SAFETY: prctl is async-signal-safe; nothing else runs here.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| format!("containerd: {e}"))?;
    Ok(child.id() as i32)
}

/// SIGTERM `pid`, then SIGKILL after 10 s; reaps it if it is our child.
fn kill(pid: i32) -> bool {
    // SAFETY: signals to a pid this process started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child; WNOHANG never blocks.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid || !Path::new(&format!("/proc/{pid}")).exists() {
            return true;
        }
        if Instant::now() > deadline {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // SAFETY: as above, blocking: SIGKILL cannot be ignored.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An image to build: its kind, the names it is imported as, and what it
/// changes in the busybox rootfs.
type Variant = (&'static str, &'static [&'static str], fn(&Path));

/// Build (once; kept in buildah's storage) and save every image the node
/// imports, in one archive: busybox with a long sleep as its entrypoint,
/// plain and hostile.
fn build_images(out: &Path) -> Result<PathBuf, String> {
    let tag = &util::sha256_file(&util::busybox().unwrap())[..12];
    let mut all: Vec<&str> = Vec::new();
    // The payments image has content of its own: containerd names a
    // container's image by the first reference it has for that image ID,
    // so two tags of one image would make `io.kubernetes.cri.image-name`
    // either of them.
    let variants: [Variant; 4] = [
        ("app", &[PAUSE_IMAGE, APP_IMAGE], |_| {}),
        ("payments", &[PAYMENTS_IMAGE], |root| {
            std::fs::write(root.join("etc/repository"), "payments\n").unwrap();
        }),
        ("hostile-target", &[HOSTILE_TARGET_IMAGE], |root| {
            std::fs::create_dir_all(root.join("run")).unwrap();
            std::os::unix::fs::symlink(BAIT, root.join("run/private")).unwrap();
        }),
        ("hostile-run", &[HOSTILE_RUN_IMAGE], |root| {
            std::os::unix::fs::symlink("../..", root.join("run")).unwrap();
        }),
    ];
    for (kind, names, shape) in variants {
        let local = format!("localhost/privy-cri-build/{kind}:{tag}");
        let exists = Command::new("buildah")
            .args(["inspect", "--type", "image", &local])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        if !exists {
            let tmp = tempfile::tempdir().unwrap();
            let root = tmp.path().join("rootfs");
            util::busybox_rootfs(&root);
            for d in ["proc", "dev", "sys", "etc", "tmp"] {
                std::fs::create_dir_all(root.join(d)).unwrap();
            }
            shape(&root);
            let tar = tmp.path().join("rootfs.tar");
            run(
                "tar",
                &[
                    s(&["-C"]),
                    vec![root.into()],
                    s(&["-cf"]),
                    vec![tar.clone().into()],
                    s(&["."]),
                ]
                .concat(),
            )?;
            let ctr = run_out("buildah", &s(&["from", "scratch"]))?;
            let ctr = ctr.trim();
            let steps: Vec<Vec<std::ffi::OsString>> = vec![
                [s(&["add", ctr]), vec![tar.into()], s(&["/"])].concat(),
                s(&[
                    "config",
                    "--entrypoint",
                    r#"["/bin/sleep","2147483647"]"#,
                    ctr,
                ]),
                s(&["commit", "-q", "--rm", ctr, &local]),
            ];
            for a in steps {
                run("buildah", &a)?;
            }
        }
        for name in names {
            run("buildah", &s(&["tag", &local, name]))?;
            all.push(*name);
        }
    }
    // One docker-archive for all of them (podman reads buildah's storage),
    // so one `ctr images import`.
    let tar = out.join("images.tar");
    let mut args = s(&["save", "-m", "-q", "--format", "docker-archive", "-o"]);
    args.push(tar.clone().into());
    args.extend(all.iter().map(Into::into));
    run("podman", &args)?;
    Ok(tar)
}

fn s(a: &[&str]) -> Vec<std::ffi::OsString> {
    a.iter().map(Into::into).collect()
}

fn run(bin: &str, args: &[std::ffi::OsString]) -> Result<(), String> {
    run_out(bin, args).map(|_| ())
}

fn run_out(bin: &str, args: &[std::ffi::OsString]) -> Result<String, String> {
    let out = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{bin}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{bin} {:?}: {}", args, text(&out.stderr)));
    }
    Ok(text(&out.stdout))
}

/// Tear down the leftovers of earlier runs whose process is gone.
fn reap_stale() {
    let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(DIR_PREFIX)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            reap(&e.path());
        }
    }
}

/// Kill every process containerd left for the node in `dir` (its shims,
/// by their `-address`, and the containers, by their root), detach every
/// mount under `dir`, and remove it.
fn reap(dir: &Path) {
    let dir_s = dir.display().to_string();
    let ours = |pid: &str| -> bool {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let root = std::fs::read_link(format!("/proc/{pid}/root")).unwrap_or_default();
        (cmd.contains("containerd") && cmd.contains(&dir_s)) || root.starts_with(dir)
    };
    for _ in 0..3 {
        let pids: Vec<i32> = std::fs::read_dir("/proc")
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                    .filter(|p| *p != std::process::id() as i32 && ours(&p.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        if pids.is_empty() {
            break;
        }
        for p in &pids {
            // SAFETY: processes this test node started (found by its
            // socket path or its rootfs), killed by pid.
            unsafe { libc::kill(*p, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    for _ in 0..5 {
        let mut mounts: Vec<String> = mount_points()
            .into_iter()
            .filter(|m| Path::new(m).starts_with(dir))
            .collect();
        if mounts.is_empty() {
            break;
        }
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let c = std::ffi::CString::new(m).unwrap();
            // SAFETY: a NUL-terminated path; MNT_DETACH never blocks.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            eprintln!("privy CRI test node: cannot remove {}: {e}", dir.display());
        }
    }
}

/// Mount points in the host (this process's) mount namespace.
pub fn mount_points() -> Vec<String> {
    mount_points_of("self")
}

/// Mount points in `pid`'s mount namespace (`self` for this process).
pub fn mount_points_of(pid: &str) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(privy::sys::mountinfo::unescape)
        .collect()
}

/// Labels and annotations as the CRI wants them.
pub fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
