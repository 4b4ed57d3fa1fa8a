//! Hostile input to `privy scan`: entry names that forge output lines or
//! reverse text (B14), blobs and secret files that are devices or FIFOs
//! (B19), and ordinary files that must not look like leaks: real jars,
//! wheels and compressed man pages scan clean with the default settings.

use super::nested::{zip, Method};
use super::{
    assert_one_error_line, config, findings, gz, layer_tar, oci_layout, scan, write_secret,
};
use crate::util::{self, secret, PRIVY};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Characters that must never reach a terminal raw.
fn unsafe_char(c: char) -> bool {
    (c.is_control() && c != '\n')
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

#[test]
fn b14_names_that_forge_lines_or_reverse_text_are_escaped_in_every_output() {
    let t = tempfile::tempdir().unwrap();
    let s = secret("forge");
    let sf = write_secret(t.path(), "k", &s);
    let forged = "a\nimage.tar: clean (0 leaks)\x1b[2K\r";
    let bidi = "invoice\u{202e}fdp.exe";
    let z = zip(&[("x\ny: clean\u{202e}", &s)], Method::Stored);
    let tar = t.path().join("image.tar");
    std::fs::write(
        &tar,
        layer_tar(&[(forged, &s), (bidi, &s), ("app.zip", &z)]),
    )
    .unwrap();
    for format in ["text", "json", "sarif"] {
        let out = scan(&[
            "--format",
            format,
            "--secret-file",
            sf.to_str().unwrap(),
            tar.to_str().unwrap(),
        ]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{format}: {}",
            util::text(&out.stderr)
        );
        let text = util::text(&out.stdout);
        let bad: Vec<char> = text.chars().filter(|&c| unsafe_char(c)).collect();
        assert!(bad.is_empty(), "{format}: raw {bad:?} in {text}");
        assert!(
            !text
                .lines()
                .any(|l| l.trim_start().starts_with("image.tar: clean")),
            "{format}: a forged line: {text}"
        );
        if format == "text" {
            assert!(
                text.contains("a\\nimage.tar: clean (0 leaks)\\u{1b}[2K\\r"),
                "{text}"
            );
            assert!(text.contains("invoice\\u{202e}fdp.exe"), "{text}");
            assert!(text.contains("app.zip!/x\\ny: clean\\u{202e}"), "{text}");
            assert_eq!(text.lines().count(), 4, "{text}");
        } else {
            // Still valid JSON, with the names spelled out.
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert!(v.to_string().contains("invoice\\\\u{202e}fdp.exe"), "{v}");
        }
    }
}

fn blob_paths(img: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(img.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

/// Run privy with a deadline: a hang is a failure, not a stuck test.
fn scan_within(args: &[&str], limit: Duration) -> std::process::Output {
    let mut child = Command::new(PRIVY)
        .arg("scan")
        .args(args)
        .env_remove("PRIVY_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("privy scan {args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mkfifo(p: &Path) {
    nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}

#[test]
fn b19_blobs_and_secret_files_that_are_devices_or_fifos_fail_fast_with_one_line() {
    let t = tempfile::tempdir().unwrap();
    let sf = write_secret(t.path(), "k", &secret("fifo"));
    let sfs = sf.to_str().unwrap();
    let limit = Duration::from_secs(20);
    // The layer blob of an OCI layout replaced by a symlink to /dev/zero,
    // then to a FIFO nobody writes.
    let layer = layer_tar(&[("a", b"fine")]);
    let layer_digest = super::digest(&layer);
    for (what, mention) in [("zero", "character device"), ("fifo", "FIFO")] {
        let img = t.path().join(what);
        oci_layout(
            &img,
            &[(layer.clone(), "application/vnd.oci.image.layer.v1.tar")],
            &config(&[], &[]),
        );
        let blob = blob_paths(&img)
            .into_iter()
            .find(|p| layer_digest.ends_with(&*p.file_name().unwrap().to_string_lossy()))
            .unwrap();
        std::fs::remove_file(&blob).unwrap();
        if what == "zero" {
            std::os::unix::fs::symlink("/dev/zero", &blob).unwrap();
        } else {
            let fifo = t.path().join("layer.fifo");
            mkfifo(&fifo);
            std::os::unix::fs::symlink(&fifo, &blob).unwrap();
        }
        let out = scan_within(&["--secret-file", sfs, img.to_str().unwrap()], limit);
        let err = assert_one_error_line(&out, mention);
        assert!(err.contains("not a regular file"), "{err}");
    }
    // --secret-file on a FIFO, and a device as the target.
    let fifo = t.path().join("secret.fifo");
    mkfifo(&fifo);
    let tar = t.path().join("ok.tar");
    std::fs::write(&tar, layer_tar(&[("a", b"fine")])).unwrap();
    let out = scan_within(
        &[
            "--secret-file",
            fifo.to_str().unwrap(),
            tar.to_str().unwrap(),
        ],
        limit,
    );
    let err = assert_one_error_line(&out, "secret.fifo");
    assert!(err.contains("FIFO"), "{err}");
    let out = scan_within(&["--secret-file", sfs, "/dev/zero"], limit);
    assert_one_error_line(&out, "character device");
}

/// Regular files under `dir` whose name ends with `ext`, at most `n`.
fn files_with(dir: &Path, ext: &str, n: usize, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        if out.len() >= n {
            return;
        }
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            files_with(&p, ext, n, out);
        } else if ft.is_file() && p.to_string_lossy().ends_with(ext) {
            out.push(p);
        }
    }
}

#[test]
fn no_false_positives_on_real_jars_wheels_and_compressed_man_pages() {
    let mut jars = Vec::new();
    files_with(Path::new("/usr/share/java"), ".jar", 40, &mut jars);
    let mut wheels = Vec::new();
    for d in [
        "/usr/share/python-wheels",
        "/root/.cache/pip",
        "/usr/lib/python3",
    ] {
        files_with(Path::new(d), ".whl", 10, &mut wheels);
    }
    let mut man = Vec::new();
    files_with(Path::new("/usr/share/man"), ".gz", 400, &mut man);
    if jars.is_empty() || wheels.is_empty() || man.is_empty() {
        let why = format!(
            "need jars in /usr/share/java ({}), wheels in /usr/share/python-wheels ({}), gz man pages ({}): apt-get install libcommons-lang3-java python3-pip-whl man-db",
            jars.len(),
            wheels.len(),
            man.len()
        );
        if std::env::var("PRIVY_E2E_REQUIRED").as_deref() == Ok("1") {
            panic!("{why}");
        }
        eprintln!("SKIP: {why}");
        return;
    }
    let all: Vec<(String, Vec<u8>)> = jars
        .iter()
        .chain(&wheels)
        .chain(&man)
        .map(|p| {
            (
                p.display().to_string().trim_start_matches('/').to_string(),
                std::fs::read(p).unwrap(),
            )
        })
        .collect();
    let members: Vec<(&str, &[u8])> = all
        .iter()
        .map(|(p, d)| (p.as_str(), d.as_slice()))
        .collect();
    let layer = layer_tar(&members);
    let t = tempfile::tempdir().unwrap();
    // Secrets of the usual shapes: tokens, a PEM key, short pins.
    let mut args: Vec<String> = vec!["--format".into(), "json".into()];
    let shapes: Vec<Vec<u8>> = vec![
        secret("a"),
        secret("b")[..20].to_vec(),
        super::forms::pem(),
        hex::encode(secret("c")).into_bytes(),
        super::b64(&secret("d")).into_bytes(),
    ];
    for (i, s) in shapes.iter().enumerate() {
        let f = write_secret(t.path(), &format!("s{i}"), s);
        args.extend(["--secret-file".into(), f.display().to_string()]);
    }
    let img = t.path().join("img");
    oci_layout(
        &img,
        &[
            (layer.clone(), "application/vnd.oci.image.layer.v1.tar"),
            (gz(&layer), "application/vnd.oci.image.layer.v1.tar+gzip"),
        ],
        &config(&[], &[]),
    );
    args.push(img.display().to_string());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = scan(&argv);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["incomplete"],
        serde_json::json!([]),
        "{}",
        v["incomplete"]
    );
    assert_eq!(out.status.code(), Some(0), "{:#?}", findings(&out));
    eprintln!(
        "{} jars, {} wheels, {} man pages: clean ({} bytes scanned)",
        jars.len(),
        wheels.len(),
        man.len(),
        v["bytes"]
    );
}

/// `--stats` reports the scanner's own peak memory, not its parent's: the
/// bomb tests judge the scanner by it, and Linux carries `ru_maxrss` across
/// `exec` from the forking parent (a test binary holding 600 MiB made a
/// small scan report over 400 MiB under the full suite).
#[test]
fn stats_peak_rss_is_the_scanners_own_not_its_parents() {
    let t = tempfile::tempdir().unwrap();
    let sf = super::write_secret(t.path(), "k", &secret("own-rss"));
    let tree = t.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("f"), b"nothing to see").unwrap();
    // The parent touches 600 MiB before it starts the scan.
    let ballast = vec![1u8; 600 << 20];
    let o = super::scan(&[
        "--stats",
        "--secret-file",
        sf.to_str().unwrap(),
        tree.to_str().unwrap(),
    ]);
    assert!(std::hint::black_box(&ballast)
        .iter()
        .step_by(4096)
        .all(|b| *b == 1));
    drop(ballast);
    let stats = util::text(&o.stderr);
    let rss: u64 = stats
        .split("peak RSS ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stats}"));
    assert!(rss < 200, "a small scan reports peak RSS {rss} MiB");
}
