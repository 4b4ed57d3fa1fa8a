//! The text forms a copy of a secret takes: percent-encoding in a URL,
//! JSON string escapes (a PEM key with `\n`, `/` as `\/`), UTF-16LE, and
//! dumps with offsets (`od -b`, `xxd`, `hexdump -C`), each alone in a layer
//! and inside a zip inside a gzip layer, whole and as a part of at least
//! `--min-match` bytes. Dumps come from the real tools when installed, and
//! the same formats written here otherwise (checked equal where both
//! exist).

use super::nested::{zip, Method};
use super::{
    assert_never_printed, config, findings, gz, layer_tar, oci_layout, scan, write_secret,
};
use crate::util::{self, secret};
use std::collections::BTreeSet;
use std::process::Command;

/// A PEM private key around a random base64 body (so it has `/`, `+`, `=`
/// and newlines for every escaping to change).
pub fn pem() -> Vec<u8> {
    // Random bytes only (a shared prefix would be a real common part).
    let raw: Vec<u8> = ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .flat_map(|t| {
            let s = secret(t);
            hex::decode(&s[s.len() - 48..]).unwrap()
        })
        .collect();
    let mut body = super::b64(&raw);
    for (at, c) in [(10, "/"), (30, "+"), (75, "/"), (140, "+")] {
        body.replace_range(at..at + 1, c);
    }
    let mut s = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(line).unwrap());
        s.push('\n');
    }
    s.push_str("-----END PRIVATE KEY-----\n");
    s.into_bytes()
}

/// `encodeURIComponent`: everything but unreserved characters as %XX.
fn percent(s: &[u8]) -> String {
    s.iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn od_b(s: &[u8]) -> String {
    let mut out = String::new();
    for (i, line) in s.chunks(16).enumerate() {
        out.push_str(&format!("{:07o}", i * 16));
        for b in line {
            out.push_str(&format!(" {b:03o}"));
        }
        out.push('\n');
    }
    out.push_str(&format!("{:07o}\n", s.len()));
    out
}

fn printable(line: &[u8]) -> String {
    line.iter()
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            }
        })
        .collect()
}

fn xxd(s: &[u8]) -> String {
    let mut out = String::new();
    for (i, line) in s.chunks(16).enumerate() {
        let mut hex = String::new();
        for (j, b) in line.iter().enumerate() {
            hex.push_str(&format!("{b:02x}"));
            if j % 2 == 1 {
                hex.push(' ');
            }
        }
        out.push_str(&format!("{:08x}: {hex:<40} {}\n", i * 16, printable(line)));
    }
    out
}

fn hexdump_c(s: &[u8]) -> String {
    let mut out = String::new();
    for (i, line) in s.chunks(16).enumerate() {
        let mut hex = String::new();
        for (j, b) in line.iter().enumerate() {
            hex.push_str(&format!("{b:02x} "));
            if j == 7 {
                hex.push(' ');
            }
        }
        out.push_str(&format!(
            "{:08x}  {hex:<49} |{}|\n",
            i * 16,
            printable(line)
        ));
    }
    out.push_str(&format!("{:08x}\n", s.len()));
    out
}

/// The tool's output for `s`, checked against ours, or ours.
fn dump(tool: &[&str], ours: String, s: &[u8], dir: &std::path::Path) -> Vec<u8> {
    if util::which(tool[0]).is_none() {
        return ours.into_bytes();
    }
    let f = dir.join("dump-input");
    std::fs::write(&f, s).unwrap();
    let out = Command::new(tool[0])
        .args(&tool[1..])
        .arg(&f)
        .output()
        .unwrap();
    assert!(out.status.success(), "{tool:?}");
    assert_eq!(
        util::text(&out.stdout),
        ours,
        "{tool:?} prints another format"
    );
    out.stdout
}

fn utf16le(s: &[u8]) -> Vec<u8> {
    let mut out = vec![0xff, 0xfe];
    for u in std::str::from_utf8(s).unwrap().encode_utf16() {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out
}

#[test]
fn text_forms_alone_and_inside_a_zip_in_a_gzip_layer_are_found_with_their_kind() {
    let t = tempfile::tempdir().unwrap();
    let s = pem();
    let sf = write_secret(t.path(), "id.pem", &s);
    let json = serde_json::to_string(&serde_json::json!({"key": util::text(&s)})).unwrap();
    assert!(json.contains("\\n"));
    let php = json.replace('/', "\\/");
    let part = &s[40..80];
    let files: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "etc/app.url",
            format!("https://user:{}@host/", percent(&s)).into_bytes(),
            "percent",
        ),
        (
            "etc/part.url",
            format!("https://h/?k={}", percent(part)).into_bytes(),
            "percent",
        ),
        ("etc/cfg.json", json.clone().into_bytes(), "escaped"),
        ("etc/php.json", php.into_bytes(), "escaped"),
        ("etc/win.ini", utf16le(&s), "utf16le"),
        (
            "tmp/od.txt",
            dump(&["od", "-b"], od_b(&s), &s, t.path()),
            "octal",
        ),
        ("tmp/xxd.txt", dump(&["xxd"], xxd(&s), &s, t.path()), "hex"),
        (
            "tmp/hd.txt",
            dump(&["hexdump", "-C"], hexdump_c(&s), &s, t.path()),
            "hex",
        ),
    ];
    let members: Vec<(&str, &[u8])> = files.iter().map(|(p, d, _)| (*p, d.as_slice())).collect();
    let sfs = sf.to_str().unwrap();
    // Alone, in an uncompressed layer.
    let img = t.path().join("alone");
    oci_layout(
        &img,
        &[(
            layer_tar(&members),
            "application/vnd.oci.image.layer.v1.tar",
        )],
        &config(&[], &[]),
    );
    let out = scan(&[
        "--format",
        "json",
        "--secret-file",
        sfs,
        img.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", util::text(&out.stderr));
    assert_never_printed(&out, &s);
    let got: BTreeSet<(String, String)> = findings(&out)
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().into(),
                f["match"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = files
        .iter()
        .map(|(p, _, k)| (p.to_string(), k.to_string()))
        .collect();
    assert_eq!(got, want, "{:#?}", findings(&out));
    // Whole copies are reported whole (one finding per file).
    assert_eq!(findings(&out).len(), files.len(), "{:#?}", findings(&out));
    // Nested: the same files in a zip, in a gzip layer.
    let img = t.path().join("nested");
    let bundle = zip(&members, Method::Deflate);
    oci_layout(
        &img,
        &[(
            gz(&layer_tar(&[("srv/bundle.zip", &bundle)])),
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )],
        &config(&[], &[]),
    );
    let out = scan(&[
        "--format",
        "json",
        "--secret-file",
        sfs,
        img.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", util::text(&out.stderr));
    let got: BTreeSet<(String, String)> = findings(&out)
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().into(),
                f["match"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = files
        .iter()
        .map(|(p, _, k)| (format!("srv/bundle.zip!/{p}"), format!("zip:{k}")))
        .collect();
    assert_eq!(got, want, "{:#?}", findings(&out));
}

#[test]
fn text_forms_below_min_match_and_lookalikes_stay_clean() {
    let t = tempfile::tempdir().unwrap();
    let s = pem();
    let sf = write_secret(t.path(), "id.pem", &s);
    let short = &s[100..130]; // 30 bytes < 32
    let files: Vec<(&str, Vec<u8>)> = vec![
        (
            "a.url",
            format!("https://h/?k={}", percent(short)).into_bytes(),
        ),
        (
            "b.json",
            serde_json::to_string(&util::text(short))
                .unwrap()
                .into_bytes(),
        ),
        ("c.txt", utf16le(short)),
        ("d.txt", od_b(short).into_bytes()),
        ("e.txt", xxd(short).into_bytes()),
        // Other keys' escapes and dumps.
        (
            "f.json",
            serde_json::to_string(&util::text(&pem()))
                .unwrap()
                .into_bytes(),
        ),
        ("g.txt", xxd(&pem()).into_bytes()),
    ];
    let members: Vec<(&str, &[u8])> = files.iter().map(|(p, d)| (*p, d.as_slice())).collect();
    let tar = t.path().join("l.tar");
    std::fs::write(&tar, layer_tar(&members)).unwrap();
    let out = scan(&[
        "--format",
        "json",
        "--secret-file",
        sf.to_str().unwrap(),
        tar.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{:#?}", findings(&out));
}
