//! Helpers shared by the integration tests: secrets and searching for
//! them, running the `privy` binary, gates for end-to-end tests, and
//! per-process temp dirs here; worlds (configs), bundles and images,
//! daemons, and the plugin host in the files next to this one.

#![allow(dead_code)]

pub mod bundle;
pub mod daemon;
pub mod image;
pub mod plugins;
pub mod world;

pub use bundle::*;
pub use daemon::Daemon;
pub use image::Image;
pub use plugins::*;
pub use world::World;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub const PRIVY: &str = env!("CARGO_BIN_EXE_privy");

/// The privy binary's canonical path, as `install` records it.
pub fn privy_canonical() -> String {
    std::fs::canonicalize(PRIVY).unwrap().display().to_string()
}

/// The thin hook, `privy-hook`, built next to privy.
pub const PRIVY_HOOK: &str = env!("CARGO_BIN_EXE_privy-hook");

/// The thin hook's canonical path, as `install` records it.
pub fn privy_hook_canonical() -> String {
    std::fs::canonicalize(PRIVY_HOOK)
        .unwrap()
        .display()
        .to_string()
}

pub fn sha256_file(p: &Path) -> String {
    sha256_hex(&std::fs::read(p).unwrap())
}

pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
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

/// Whether every tool in `tools` can run an end-to-end test ([`e2e_ready`]
/// for each: the first missing one says why, or fails the test under
/// `PRIVY_E2E_REQUIRED=1`).
pub fn ready(tools: &[&str]) -> bool {
    tools.iter().all(|t| e2e_ready(t))
}

/// Every regular file under `roots` (symlinks not followed, devices
/// skipped) that contains `needle`, by grep: fast enough for all of
/// /var/lib/containers. The pattern file lives on tmpfs, outside `roots`.
pub fn search_disk(roots: &[PathBuf], needle: &[u8]) -> Vec<PathBuf> {
    let pat = tempfile::Builder::new()
        .prefix("privy-pattern-")
        .tempfile_in("/dev/shm")
        .unwrap();
    std::fs::write(pat.path(), needle).unwrap();
    let out = Command::new("grep")
        .args(["-r", "-l", "-a", "-F", "-D", "skip", "-s", "-f"])
        .arg(pat.path())
        .args(roots)
        .output()
        .unwrap();
    // 0: found, 1: not found, 2: some file unreadable (sockets, races).
    assert!(out.status.code().is_some_and(|c| c <= 2), "grep failed");
    text(&out.stdout).lines().map(PathBuf::from).collect()
}

/// No byte of any of `needles` where privy or the container could have
/// left it (L1): the commands' `outputs`, privy's log, the world's files
/// (its host private.d excepted: that is where the operator put them) and
/// the bundle, rootfs included.
pub fn assert_no_trace(w: &World, b: &Bundle, outputs: &[&Output], needles: &[&[u8]]) {
    for n in needles {
        for o in outputs {
            assert!(!contains(&o.stdout, n), "a secret is in stdout");
            assert!(!contains(&o.stderr, n), "a secret is in stderr");
        }
        assert!(!contains(&w.log(), n), "a secret is in privy's log");
        let mut hits = files_containing(w.dir.path(), n);
        hits.retain(|p| !p.starts_with(&w.private_d));
        assert!(hits.is_empty(), "a secret is in privy's files: {hits:?}");
        assert!(
            files_containing(b.path(), n).is_empty(),
            "a secret is in the bundle"
        );
    }
}

/// `$TMPDIR/PREFIX-PID`, created with `mode`, for what this test process
/// shares between its tests (a component cache, a binary any uid can run).
/// Nothing removes it at exit (statics have no destructor), so each call
/// first removes those of test processes that have ended: runs never pile
/// up copies.
pub fn process_dir(prefix: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let tmp = std::env::temp_dir();
    if let Ok(rd) = std::fs::read_dir(&tmp) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix(prefix)
                .and_then(|r| r.strip_prefix('-'))
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let d = tmp.join(format!("{prefix}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
    d
}
