//! `privy scan` end to end: synthetic OCI layouts, OCI and docker
//! archives and plain tars built here (layers with the `tar` crate), a real
//! image through podman (`containers-storage:` and `podman save`), bad
//! input (exit 2, one line), the JSON and SARIF shapes, and that no output
//! ever contains the secret.
//!
//! - `nested`: archives and compressions inside layers (zip family, xz,
//!   bzip2, ar, cpio, any nesting), the nesting and expansion limits, bombs.
//! - `forms`: the text forms (percent, string escapes, UTF-16LE, dumps).
//! - `hostile`: names that try to forge output, blobs and secret files that
//!   are devices or FIFOs, real jars, wheels and man pages (no false
//!   positive).

mod forms;
mod hostile;
mod nested;

use crate::util::{self, secret, PRIVY};
use serde_json::{json, Value};
use sha2::Digest;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub(crate) fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

pub(crate) fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub(crate) fn zst(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

pub(crate) fn b64(data: &[u8]) -> String {
    // Plain base64 for assertions (std alphabet, padded).
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

pub(crate) fn digest(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

pub(crate) fn put_blob(dir: &Path, b: &[u8]) -> String {
    let d = digest(b);
    let p = dir.join("blobs/sha256");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join(&d[7..]), b).unwrap();
    d
}

/// An OCI layout with the given layer blobs (media type by compression)
/// and config.
pub(crate) fn oci_layout(dir: &Path, layers: &[(Vec<u8>, &str)], config: &Value) {
    let cfg = serde_json::to_vec(config).unwrap();
    let cfg_d = put_blob(dir, &cfg);
    let ls: Vec<Value> = layers
        .iter()
        .map(|(b, mt)| json!({"mediaType": mt, "digest": put_blob(dir, b), "size": b.len()}))
        .collect();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_d, "size": cfg.len()},
        "layers": ls,
    }))
    .unwrap();
    let m_d = put_blob(dir, &manifest);
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m_d, "size": manifest.len()}
        ]}))
        .unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

pub(crate) fn config(env: &[&str], history: &[&str]) -> Value {
    json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": env},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": history.iter().map(|h| json!({"created_by": h})).collect::<Vec<_>>(),
    })
}

pub(crate) fn scan(args: &[&str]) -> Output {
    Command::new(PRIVY)
        .arg("scan")
        .args(args)
        .env_remove("PRIVY_CONFIG")
        .output()
        .unwrap()
}

pub(crate) fn write_secret(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// Neither stdout nor stderr holds the secret, raw, base64 or hex.
pub(crate) fn assert_never_printed(out: &Output, s: &[u8]) {
    let all = [out.stdout.as_slice(), out.stderr.as_slice()].concat();
    for form in [
        s.to_vec(),
        b64(s).into_bytes(),
        hex::encode(s).into_bytes(),
        s[..16].to_vec(),
    ] {
        assert!(
            !util::contains(&all, &form),
            "output contains secret material"
        );
    }
}

/// Exit 2, nothing on stdout, exactly one line on stderr.
pub(crate) fn assert_one_error_line(out: &Output, mentions: &str) -> String {
    let err = util::text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(out.stdout.is_empty(), "stdout: {}", util::text(&out.stdout));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("privy: "), "{err}");
    assert!(
        err.contains(mentions),
        "{err:?} should mention {mentions:?}"
    );
    assert!(!err.to_lowercase().contains("clean"), "{err}");
    err
}

pub(crate) fn findings(out: &Output) -> Vec<Value> {
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", util::text(&out.stdout)));
    v["findings"].as_array().unwrap().clone()
}

#[test]
fn oci_layout_leaks_in_layers_nested_gzip_config_and_history_are_all_found() {
    let t = tempfile::tempdir().unwrap();
    let s = secret("oci");
    let sf = write_secret(t.path(), "api.key", &s);
    let inner = gz(&layer_tar(&[("key", &s)]));
    let l1 = gz(&layer_tar(&[
        ("etc/app.conf", b"nothing here\n"),
        ("root/.npmrc", &[b"token=".as_slice(), &s, b"\n"].concat()),
    ]));
    let l2 = layer_tar(&[
        ("srv/backup.tar.gz", &inner),
        ("srv/enc.txt", b64(&s).as_bytes()),
        ("srv/hex.txt", hex::encode(&s[..40]).as_bytes()),
    ]);
    let l3 = zst(&layer_tar(&[("opt/cut.txt", &s[5..45])]));
    let env = format!("TOKEN={}", util::text(&s));
    let hist = format!("/bin/sh -c echo {} > /dev/null", util::text(&s));
    let img = t.path().join("img");
    oci_layout(
        &img,
        &[
            (l1.clone(), "application/vnd.oci.image.layer.v1.tar+gzip"),
            (l2.clone(), "application/vnd.oci.image.layer.v1.tar"),
            (l3.clone(), "application/vnd.oci.image.layer.v1.tar+zstd"),
        ],
        &config(&[&env, "PATH=/bin"], &["/bin/sh -c true", &hist]),
    );
    let target = format!("oci:{}", img.display());
    let out = scan(&[
        "--format",
        "json",
        "--secret-file",
        sf.to_str().unwrap(),
        &target,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", util::text(&out.stderr));
    assert_never_printed(&out, &s);
    let f = findings(&out);
    let has = |layer: &str, path: &str, kind: &str| {
        f.iter().any(|x| {
            x["layer"] == layer
                && x["path"] == path
                && x["match"] == kind
                && x["source"] == sf.to_str().unwrap()
        })
    };
    let (d1, d2, d3) = (digest(&l1), digest(&l2), digest(&l3));
    assert!(has(&d1, "root/.npmrc", "exact"), "{f:#?}");
    assert!(has(&d2, "srv/backup.tar.gz!/key", "gzip:exact"), "{f:#?}");
    assert!(has(&d2, "srv/enc.txt", "base64"), "{f:#?}");
    assert!(has(&d2, "srv/hex.txt", "hex"), "{f:#?}");
    assert!(has(&d3, "opt/cut.txt", "substring"), "{f:#?}");
    assert!(
        f.iter()
            .any(|x| x["section"] == "config" && x["path"] == "/config/Env/0"),
        "{f:#?}"
    );
    assert!(
        f.iter()
            .any(|x| x["section"] == "history" && x["path"] == "/history/1/created_by"),
        "{f:#?}"
    );
    assert!(!f.iter().any(|x| x["path"] == "etc/app.conf"), "{f:#?}");
    let npmrc = f.iter().find(|x| x["path"] == "root/.npmrc").unwrap();
    assert_eq!(
        (npmrc["offset"].as_u64(), npmrc["length"].as_u64()),
        (Some(6), Some(s.len() as u64))
    );
    assert_eq!(npmrc["kind"], "exact");
    assert_eq!(f.len(), 7, "{f:#?}");

    // The text report names layer, path, secret and kind; no secret bytes.
    let out = scan(&["--secret-file", sf.to_str().unwrap(), &target]);
    assert_eq!(out.status.code(), Some(1));
    assert_never_printed(&out, &s);
    let text = util::text(&out.stdout);
    assert!(
        text.contains(&format!("layer {d2} srv/backup.tar.gz!/key")),
        "{text}"
    );
    assert!(
        text.contains("gzip:exact") && text.contains("api.key"),
        "{text}"
    );
    assert!(text.contains("7 leak(s) found"), "{text}");
}

#[test]
fn clean_layout_exits_zero_and_short_secrets_match_whole_only() {
    let t = tempfile::tempdir().unwrap();
    let pin = b"Zq8-pin-4417".to_vec(); // 12 bytes: whole only
    let sf = write_secret(t.path(), "pin", &pin);
    let img = t.path().join("img");
    let l = layer_tar(&[
        ("etc/os-release", b"NAME=test\n"),
        ("etc/partial", b"prefix Zq8-pin-441 suffix\n"),
    ]);
    oci_layout(
        &img,
        &[(l, "application/vnd.oci.image.layer.v1.tar")],
        &config(&[], &[]),
    );
    let out = scan(&["--secret-file", sf.to_str().unwrap(), img.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        util::text(&out.stdout),
        util::text(&out.stderr)
    );
    assert!(
        util::text(&out.stdout).contains(": clean ("),
        "{}",
        util::text(&out.stdout)
    );

    // The whole short secret is found.
    let img2 = t.path().join("img2");
    let l = layer_tar(&[("etc/pin", b"x Zq8-pin-4417 y")]);
    oci_layout(
        &img2,
        &[(l, "application/vnd.oci.image.layer.v1.tar")],
        &config(&[], &[]),
    );
    let out = scan(&[
        "--format",
        "json",
        "--secret-file",
        sf.to_str().unwrap(),
        img2.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let f = findings(&out);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(
        (f[0]["path"].as_str(), f[0]["offset"].as_u64()),
        (Some("etc/pin"), Some(2))
    );
}

#[test]
fn min_match_flag_sets_the_substring_threshold() {
    let t = tempfile::tempdir().unwrap();
    let s = secret("minmatch");
    let sf = write_secret(t.path(), "k", &s);
    let tar = t.path().join("l.tar");
    std::fs::write(&tar, layer_tar(&[("a", &s[..40])])).unwrap();
    let at = |n: &str| {
        scan(&[
            "--min-match",
            n,
            "--secret-file",
            sf.to_str().unwrap(),
            tar.to_str().unwrap(),
        ])
        .status
        .code()
    };
    assert_eq!(at("40"), Some(1));
    assert_eq!(at("41"), Some(0));
    let out = scan(&[
        "--min-match",
        "4",
        "--secret-file",
        sf.to_str().unwrap(),
        tar.to_str().unwrap(),
    ]);
    assert_one_error_line(&out, "--min-match");
}

#[test]
fn docker_and_oci_archives_and_plain_tars_by_magic_bytes() {
    let t = tempfile::tempdir().unwrap();
    let s = secret("arch");
    let sf = write_secret(t.path(), "k", &s);
    let layer = layer_tar(&[("usr/share/leak", &s)]);
    let diff = digest(&layer);
    // docker save layout.
    let cfg = serde_json::to_vec(
        &json!({"rootfs": {"type": "layers", "diff_ids": [diff]}, "history": []}),
    )
    .unwrap();
    let manifest = serde_json::to_vec(
        &json!([{"Config": "cfg.json", "RepoTags": ["x:1"], "Layers": ["l1/layer.tar"]}]),
    )
    .unwrap();
    let docker = t.path().join("docker.tar");
    std::fs::write(
        &docker,
        layer_tar(&[
            ("manifest.json", &manifest),
            ("cfg.json", &cfg),
            ("l1/layer.tar", &layer),
        ]),
    )
    .unwrap();
    // OCI archive: a tar of a layout.
    let img = t.path().join("img");
    oci_layout(
        &img,
        &[(gz(&layer), "application/vnd.oci.image.layer.v1.tar+gzip")],
        &config(&[], &[]),
    );
    let oci_tar = t.path().join("oci.tar");
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(".", &img).unwrap();
    std::fs::write(&oci_tar, b.into_inner().unwrap()).unwrap();
    // Plain tars, compressed, with misleading names.
    let plain_gz = t.path().join("layer.bin");
    std::fs::write(&plain_gz, gz(&layer)).unwrap();
    let plain_zst = t.path().join("layer.tar.gz"); // zstd inside
    std::fs::write(&plain_zst, zst(&layer)).unwrap();
    let dir = t.path().join("tree/usr/share");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("leak"), &s).unwrap();

    let cases = [
        (docker.display().to_string(), diff.clone()),
        (format!("docker-archive:{}", docker.display()), diff.clone()),
        (
            format!("oci-archive:{}", oci_tar.display()),
            digest(&gz(&layer)),
        ),
        (oci_tar.display().to_string(), digest(&gz(&layer))),
        (plain_gz.display().to_string(), "layer.bin".to_string()),
        (plain_zst.display().to_string(), "layer.tar.gz".to_string()),
        (
            format!("dir:{}", t.path().join("tree").display()),
            "-".to_string(),
        ),
    ];
    for (target, layer_label) in cases {
        let out = scan(&[
            "--format",
            "json",
            "--secret-file",
            sf.to_str().unwrap(),
            &target,
        ]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{target}: {}",
            util::text(&out.stderr)
        );
        assert_never_printed(&out, &s);
        let f = findings(&out);
        assert!(
            f.iter().any(|x| x["path"] == "usr/share/leak"
                && x["layer"] == layer_label.as_str()
                && x["kind"] == "exact"),
            "{target}: {f:#?}"
        );
    }
    // A plain tar is not a docker archive.
    let out = scan(&[
        "--secret-file",
        sf.to_str().unwrap(),
        &format!("docker-archive:{}", plain_gz.display()),
    ]);
    assert_one_error_line(&out, "not a docker archive");
}

#[test]
fn bad_input_is_one_line_and_exit_2_never_clean() {
    let t = tempfile::tempdir().unwrap();
    let s = secret("bad");
    let sf = write_secret(t.path(), "k", &s);
    let sfs = sf.to_str().unwrap();
    let good = layer_tar(&[("a", b"hello world"), ("b", &vec![b'x'; 100_000])]);

    // Corrupt gzip: a valid header, then damage in the deflate stream.
    let mut bad_gz = gz(&good);
    let n = bad_gz.len();
    for b in &mut bad_gz[20..n - 8] {
        *b ^= 0x5a;
    }
    let p = t.path().join("corrupt.tar.gz");
    std::fs::write(&p, &bad_gz).unwrap();
    assert_one_error_line(
        &scan(&["--secret-file", sfs, p.to_str().unwrap()]),
        "corrupt.tar.gz",
    );

    // A bad CRC in the gzip trailer, after an intact tar.
    let mut bad_crc = gz(&good);
    let n = bad_crc.len();
    bad_crc[n - 6] ^= 0xff;
    let p = t.path().join("crc.tar.gz");
    std::fs::write(&p, &bad_crc).unwrap();
    assert_one_error_line(
        &scan(&["--secret-file", sfs, p.to_str().unwrap()]),
        "checksum",
    );

    // Truncated gzip.
    let p = t.path().join("short.tar.gz");
    std::fs::write(&p, &gz(&good)[..100]).unwrap();
    assert_one_error_line(
        &scan(&["--secret-file", sfs, p.to_str().unwrap()]),
        "short.tar.gz",
    );

    // Truncated tar: cut inside the second file's data.
    let p = t.path().join("short.tar");
    std::fs::write(&p, &good[..2048]).unwrap();
    assert_one_error_line(
        &scan(&["--secret-file", sfs, p.to_str().unwrap()]),
        "truncated",
    );
    // ... and the same inside a layer of an image.
    let img = t.path().join("img");
    oci_layout(
        &img,
        &[(
            good[..2048].to_vec(),
            "application/vnd.oci.image.layer.v1.tar",
        )],
        &config(&[], &[]),
    );
    assert_one_error_line(
        &scan(&["--secret-file", sfs, img.to_str().unwrap()]),
        "truncated",
    );

    // Missing target, missing blob.
    let missing = t.path().join("nope.tar");
    assert_one_error_line(
        &scan(&["--secret-file", sfs, missing.to_str().unwrap()]),
        "no such file",
    );
    for e in std::fs::read_dir(img.join("blobs/sha256")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    assert_one_error_line(
        &scan(&["--secret-file", sfs, img.to_str().unwrap()]),
        "no such file",
    );

    // Secret files: empty, missing. (None given scans for what the
    // configured sources give: b13_scan_without_secrets_scans_for_the_sources_and_says_so.)
    let empty = write_secret(t.path(), "empty", b"");
    let tar = t.path().join("ok.tar");
    std::fs::write(&tar, &good).unwrap();
    assert_one_error_line(
        &scan(&[
            "--secret-file",
            empty.to_str().unwrap(),
            tar.to_str().unwrap(),
        ]),
        "empty",
    );
    let gone = t.path().join("gone.key");
    assert_one_error_line(
        &scan(&[
            "--secret-file",
            gone.to_str().unwrap(),
            tar.to_str().unwrap(),
        ]),
        "gone.key",
    );
    let huge = write_secret(t.path(), "huge", &vec![b'h'; 3 << 20]);
    assert_one_error_line(
        &scan(&[
            "--secret-file",
            huge.to_str().unwrap(),
            tar.to_str().unwrap(),
        ]),
        "at most",
    );
    // The good tar itself is clean.
    assert_eq!(
        scan(&["--secret-file", sfs, tar.to_str().unwrap()])
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn corrupt_gzip_inside_a_layer_is_reported_incomplete_not_clean() {
    let t = tempfile::tempdir().unwrap();
    let sf = write_secret(t.path(), "k", &secret("inner"));
    let mut bad = gz(&vec![b'a'; 50_000]);
    let n = bad.len();
    for b in &mut bad[20..n - 8] {
        *b ^= 0x33;
    }
    let tar = t.path().join("l.tar");
    std::fs::write(&tar, layer_tar(&[("var/cache/x.gz", &bad)])).unwrap();
    let out = scan(&["--secret-file", sf.to_str().unwrap(), tar.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", util::text(&out.stdout));
    let text = util::text(&out.stdout);
    assert!(
        text.contains("INCOMPLETE") && text.contains("var/cache/x.gz"),
        "{text}"
    );
    assert!(text.contains("NOT proven clean"), "{text}");
}

#[test]
fn json_and_sarif_have_the_documented_shape() {
    let t = tempfile::tempdir().unwrap();
    let s = secret("shape");
    let sf = write_secret(t.path(), "deploy.key", &s);
    let tar = t.path().join("l.tar");
    std::fs::write(
        &tar,
        layer_tar(&[("a/b.txt", &[b"xx".as_slice(), &s].concat())]),
    )
    .unwrap();
    let sfs = sf.to_str().unwrap();

    let out = scan(&[
        "--format",
        "json",
        "--secret-file",
        sfs,
        tar.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_never_printed(&out, &s);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["clean"], false);
    assert_eq!(v["exit_code"], 1);
    assert_eq!(v["min_match"], 32);
    assert_eq!(v["secrets"], json!([{"name": sfs, "len": s.len()}]));
    let f = &v["findings"][0];
    for k in [
        "target",
        "layer",
        "section",
        "path",
        "offset",
        "source",
        "kind",
        "match",
        "length",
        "compressed",
    ] {
        assert!(f.get(k).is_some(), "finding lacks {k}: {f}");
    }
    assert_eq!(
        (
            f["path"].as_str(),
            f["offset"].as_u64(),
            f["length"].as_u64()
        ),
        (Some("a/b.txt"), Some(2), Some(s.len() as u64))
    );

    let out = scan(&[
        "--format",
        "sarif",
        "--secret-file",
        sfs,
        tar.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_never_printed(&out, &s);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], "2.1.0");
    assert!(v["$schema"].as_str().unwrap().contains("sarif"));
    let run = &v["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "privy");
    assert_eq!(run["tool"]["driver"]["rules"][0]["id"], "privy/leak");
    let r = &run["results"][0];
    assert_eq!(r["ruleId"], "privy/leak");
    assert_eq!(r["level"], "error");
    assert!(r["message"]["text"]
        .as_str()
        .unwrap()
        .contains("deploy.key"));
    let loc = &r["locations"][0]["physicalLocation"];
    assert_eq!(loc["artifactLocation"]["uri"], "a/b.txt");
    assert_eq!(loc["region"]["byteOffset"], 2);
    assert_eq!(loc["region"]["startLine"], 1);
    assert!(r["partialFingerprints"]["privyLeak/v1"].is_string());

    // Clean: an empty results array, exit 0.
    let clean = t.path().join("clean.tar");
    std::fs::write(&clean, layer_tar(&[("a", b"nothing")])).unwrap();
    let out = scan(&[
        "--format",
        "sarif",
        "--secret-file",
        sfs,
        clean.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["runs"][0]["results"], json!([]));
}

/// podman, skopeo, busybox and root, or a reason to skip.
fn podman_ready() -> bool {
    let why = if !util::is_root() {
        Some("not root")
    } else if util::which("podman").is_none() || util::which("skopeo").is_none() {
        Some("podman or skopeo is not installed")
    } else if util::busybox().is_none() {
        Some("busybox (static) is not installed")
    } else {
        None
    };
    match why {
        None => true,
        Some(w) if std::env::var("PRIVY_E2E_REQUIRED").as_deref() == Ok("1") => {
            panic!("podman scan test cannot run ({w}) but PRIVY_E2E_REQUIRED=1")
        }
        Some(w) => {
            eprintln!("SKIP: {w}; podman scan test did not run");
            false
        }
    }
}

/// `podman import` of a busybox-static rootfs plus `extra` files.
struct Image(String);

impl Image {
    fn import(tag: &str, extra: &[(&str, &[u8])]) -> Image {
        let bb = std::fs::read(util::busybox().unwrap()).unwrap();
        let mut files: Vec<(&str, &[u8])> = vec![("bin/busybox", &bb)];
        files.extend_from_slice(extra);
        let mut b = tar::Builder::new(Vec::new());
        for (p, d) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(d.len() as u64);
            h.set_mode(0o755);
            b.append_data(&mut h, p, d).unwrap();
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "bin/sh", "busybox").unwrap();
        let t = tempfile::tempdir().unwrap();
        let rootfs = t.path().join("rootfs.tar");
        std::fs::write(&rootfs, b.into_inner().unwrap()).unwrap();
        let name = format!("localhost/{}:latest", util::unique_id(tag));
        let out = Command::new("podman")
            .args(["import", "--quiet", rootfs.to_str().unwrap(), &name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "podman import: {}",
            util::text(&out.stderr)
        );
        Image(name)
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rmi", "-f", &self.0]).output();
    }
}

#[test]
fn real_image_via_containers_storage_and_podman_save() {
    if !podman_ready() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let s = secret("podman");
    let sf = write_secret(t.path(), "entitlement.pem", &s);
    let sfs = sf.to_str().unwrap();
    let leaky = Image::import("privy-scan-leak", &[("etc/pki/entitlement.pem", &s)]);
    let clean = Image::import("privy-scan-clean", &[]);

    // A private TMPDIR, so the export directory can be checked for.
    let tmpdir = t.path().join("tmp");
    std::fs::create_dir(&tmpdir).unwrap();
    let out = Command::new(PRIVY)
        .args(["scan", "--format", "json", "--secret-file", sfs])
        .arg(format!("containers-storage:{}", leaky.0))
        .env("TMPDIR", &tmpdir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", util::text(&out.stderr));
    assert_never_printed(&out, &s);
    let f = findings(&out);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0]["path"], "etc/pki/entitlement.pem");
    assert!(f[0]["layer"].as_str().unwrap().starts_with("sha256:"));
    let layer = f[0]["layer"].clone();
    // No export directory is left behind.
    let left: Vec<_> = std::fs::read_dir(&tmpdir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // ... and the export really goes there: an unusable TMPDIR fails.
    let out = Command::new(PRIVY)
        .args(["scan", "--secret-file", sfs])
        .arg(format!("containers-storage:{}", leaky.0))
        .env("TMPDIR", t.path().join("missing"))
        .output()
        .unwrap();
    assert_one_error_line(&out, "missing");

    let docker = t.path().join("docker.tar");
    let oci = t.path().join("oci.tar");
    for (fmt, p) in [("docker-archive", &docker), ("oci-archive", &oci)] {
        let o = Command::new("podman")
            .args([
                "save",
                "--quiet",
                "--format",
                fmt,
                "-o",
                p.to_str().unwrap(),
                &leaky.0,
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "podman save: {}", util::text(&o.stderr));
        let out = scan(&[
            "--format",
            "json",
            "--secret-file",
            sfs,
            &format!("{fmt}:{}", p.display()),
        ]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{fmt}: {}",
            util::text(&out.stderr)
        );
        let f = findings(&out);
        assert_eq!(f.len(), 1, "{fmt}: {f:#?}");
        assert_eq!(f[0]["path"], "etc/pki/entitlement.pem", "{fmt}");
        if fmt == "docker-archive" {
            assert_eq!(
                f[0]["layer"], layer,
                "docker archives name layers by diff_id"
            );
        }
    }

    // The busybox base image: no false positives.
    let random: Vec<PathBuf> = (0..5)
        .map(|i| write_secret(t.path(), &format!("r{i}"), &secret(&format!("r{i}"))))
        .collect();
    let mut args = vec!["--secret-file".to_string(), sfs.to_string()];
    for r in &random {
        args.extend(["--secret-file".to_string(), r.display().to_string()]);
    }
    args.push(format!("containers-storage:{}", clean.0));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = scan(&argv);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        util::text(&out.stdout),
        util::text(&out.stderr)
    );

    // A missing image.
    let out = scan(&[
        "--secret-file",
        sfs,
        "containers-storage:localhost/privy-no-such-image:latest",
    ]);
    assert_one_error_line(&out, "privy-no-such-image");
}

#[test]
fn sources_flag_scans_for_what_the_configured_sources_return_for_the_request() {
    let t = tempfile::tempdir().unwrap();
    let ci_dir = t.path().join("ci.d");
    std::fs::create_dir_all(&ci_dir).unwrap();
    let w = util::World::new(
        "",
        &format!(
            "[[source]]\nname = \"ci\"\nplugin = \"host-dir\"\ngrant.dirs = [{ci_dir:?}]\n\
             when = {{ annotation = \"io.privy.ci\", value = \"1\", stage = \"build\" }}\n"
        ),
    );
    let (npmrc, ci_key) = (secret("npmrc"), secret("ci"));
    w.put("npmrc", &npmrc, 0o600);
    std::fs::write(ci_dir.join("deploy.key"), &ci_key).unwrap();
    let tar = t.path().join("img.tar");
    std::fs::write(
        &tar,
        layer_tar(&[("home/.npmrc", &npmrc), ("etc/deploy.key", &ci_key)]),
    )
    .unwrap();
    let tars = tar.to_str().unwrap();
    let sources_of = |extra: &[&str]| {
        let out = w.privy(&[&["scan", "--sources", "--format", "json"], extra, &[tars]].concat());
        assert_eq!(out.status.code(), Some(1), "{}", util::text(&out.stderr));
        assert_never_printed(&out, &npmrc);
        assert_never_printed(&out, &ci_key);
        let mut s: Vec<String> = findings(&out)
            .iter()
            .map(|f| {
                format!(
                    "{} {}",
                    f["source"].as_str().unwrap(),
                    f["path"].as_str().unwrap()
                )
            })
            .collect();
        s.sort();
        s
    };
    // A run request: only the unscoped host-dir source applies.
    assert_eq!(sources_of(&[]), vec!["host-dir/npmrc home/.npmrc"]);
    // A build request with the annotation: the scoped source too.
    assert_eq!(
        sources_of(&["--stage", "build", "--annotation", "io.privy.ci=1"]),
        vec!["ci/deploy.key etc/deploy.key", "host-dir/npmrc home/.npmrc"]
    );
    // No source returns anything: an error, not a clean scan.
    let empty = util::World::new("", "");
    let out = empty.privy(&["scan", "--sources", tars]);
    assert_one_error_line(&out, "no configured source returned a file");
}

/// `privy scan TARGET` with no secret named scans for what the configured
/// sources give (as `--sources`) and says so in one line on stderr; with
/// none given out, it is an error, never a clean scan.
#[test]
fn b13_scan_without_secrets_scans_for_the_sources_and_says_so() {
    let t = tempfile::tempdir().unwrap();
    let w = util::World::new("", "");
    let npmrc = secret("implied");
    w.put("npmrc", &npmrc, 0o600);
    let tar = t.path().join("img.tar");
    std::fs::write(&tar, layer_tar(&[("home/.npmrc", &npmrc)])).unwrap();
    let tars = tar.to_str().unwrap();
    let out = w.privy(&["scan", "--format", "json", tars]);
    assert_eq!(out.status.code(), Some(1), "{}", util::text(&out.stderr));
    assert_never_printed(&out, &npmrc);
    let f = findings(&out);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0]["source"], "host-dir/npmrc");
    let e = util::text(&out.stderr);
    assert_eq!(
        e.trim_end(),
        "privy scan: no --secret-file given: scanning for what the configured sources give a run request (as --sources)"
    );
    // The same as --sources.
    let explicit = w.privy(&["scan", "--sources", "--format", "json", tars]);
    assert_eq!(findings(&explicit), f);
    // Nothing to look for: one error line, exit 2.
    let empty = util::World::new("", "");
    let out = empty.privy(&["scan", tars]);
    assert_eq!(out.status.code(), Some(2));
    let e = util::text(&out.stderr);
    assert!(
        e.lines()
            .last()
            .unwrap()
            .contains("no secrets to scan for: no --secret-file given"),
        "{e}"
    );
}

#[test]
fn oci_layout_reference_selects_one_image() {
    let t = tempfile::tempdir().unwrap();
    let s = secret("ref");
    let sf = write_secret(t.path(), "k", &s);
    let img = t.path().join("layout");
    oci_layout(
        &img,
        &[(
            layer_tar(&[("leak", &s)]),
            "application/vnd.oci.image.layer.v1.tar",
        )],
        &config(&[], &[]),
    );
    // A second, clean image in the same layout; name both.
    let clean_layer = layer_tar(&[("ok", b"fine")]);
    let cfg = serde_json::to_vec(&config(&[], &[])).unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put_blob(&img, &cfg), "size": cfg.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": put_blob(&img, &clean_layer), "size": clean_layer.len()}],
    }))
    .unwrap();
    let mut index: Value =
        serde_json::from_slice(&std::fs::read(img.join("index.json")).unwrap()).unwrap();
    let ms = index["manifests"].as_array_mut().unwrap();
    ms[0]["annotations"] = json!({"org.opencontainers.image.ref.name": "leaky"});
    ms.push(json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put_blob(&img, &manifest),
        "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": "clean"}}));
    std::fs::write(img.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let sfs = sf.to_str().unwrap();
    let code = |r: &str| {
        scan(&["--secret-file", sfs, &format!("oci:{}{r}", img.display())])
            .status
            .code()
    };
    assert_eq!(code(""), Some(1));
    assert_eq!(code(":leaky"), Some(1));
    assert_eq!(code(":clean"), Some(0));
    let out = scan(&["--secret-file", sfs, &format!("oci:{}:nope", img.display())]);
    assert_one_error_line(&out, "\"nope\"");
}

#[test]
fn matches_across_the_parallel_range_boundaries_are_found_once() {
    // A 20 MiB file is cut into 8 MiB ranges scanned by different threads;
    // plant copies straddling, starting and ending at the cuts.
    let t = tempfile::tempdir().unwrap();
    let s = secret("cut").repeat(20); // ~1.4 KB
    let sf = write_secret(t.path(), "k", &s);
    let mut big = vec![b'.'; 20 << 20];
    let cut = 8 << 20; // ranges start at the first entry's data
    let spots = [
        cut - s.len() / 2,
        cut + 4000,
        cut - s.len() - 3000,
        2 * cut - 1,
        5,
    ];
    for &at in &spots {
        big[at..at + s.len()].copy_from_slice(&s);
    }
    let tar = t.path().join("big.tar");
    std::fs::write(&tar, layer_tar(&[("big.bin", &big)])).unwrap();
    for threads in ["1", "2", "3"] {
        let out = scan(&[
            "--format",
            "json",
            "--threads",
            threads,
            "--secret-file",
            sf.to_str().unwrap(),
            tar.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(1));
        let mut got: Vec<(u64, u64)> = findings(&out)
            .iter()
            .map(|f| (f["offset"].as_u64().unwrap(), f["length"].as_u64().unwrap()))
            .collect();
        got.sort();
        let mut want: Vec<(u64, u64)> = spots.iter().map(|&a| (a as u64, s.len() as u64)).collect();
        want.sort();
        assert_eq!(got, want, "threads {threads}");
    }
}
