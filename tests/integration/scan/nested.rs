//! Archives and compressions inside layers: each form alone and nested,
//! in an uncompressed layer (scanned in parallel ranges, then walked) and in
//! a gzip layer (streamed); the nesting limit and unknown formats (B5);
//! zip damage and hidden entries; zip, gzip, xz and bzip2 bombs.

use super::{
    assert_never_printed, config, digest, findings, gz, layer_tar, oci_layout, scan, write_secret,
};
use crate::util::{self, secret};
use std::collections::BTreeSet;
use std::io::Write;

/// How a zip member is written.
#[derive(Clone, Copy, PartialEq)]
pub enum Method {
    Stored,
    Deflate,
}

/// A minimal zip writer: stored or deflated members, with or without data
/// descriptors (sizes after the data, as `jar` and streaming writers do).
#[derive(Default)]
pub struct Zip {
    out: Vec<u8>,
    cd: Vec<u8>,
    n: u16,
}

fn deflate_raw(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

impl Zip {
    pub fn add(&mut self, name: &str, data: &[u8], method: Method, descriptor: bool) -> &mut Self {
        let crc = crc32fast::hash(data);
        let body = match method {
            Method::Stored => data.to_vec(),
            Method::Deflate => deflate_raw(data),
        };
        let m: u16 = if method == Method::Stored { 0 } else { 8 };
        self.raw(name, &body, m, descriptor, crc, data.len() as u32)
    }

    /// A member with the given method, compressed bytes, CRC and size.
    pub fn raw(
        &mut self,
        name: &str,
        body: &[u8],
        method: u16,
        descriptor: bool,
        crc: u32,
        usize_: u32,
    ) -> &mut Self {
        let flags: u16 = 0x0800 | if descriptor { 8 } else { 0 };
        let lho = self.out.len() as u32;
        let (hcrc, hc, hu) = if descriptor {
            (0, 0, 0)
        } else {
            (crc, body.len() as u32, usize_)
        };
        let mut h = Vec::new();
        h.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        h.extend_from_slice(&20u16.to_le_bytes());
        h.extend_from_slice(&flags.to_le_bytes());
        h.extend_from_slice(&method.to_le_bytes());
        h.extend_from_slice(&[0, 0, 0x21, 0]);
        h.extend_from_slice(&hcrc.to_le_bytes());
        h.extend_from_slice(&hc.to_le_bytes());
        h.extend_from_slice(&hu.to_le_bytes());
        h.extend_from_slice(&(name.len() as u16).to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
        h.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(&h);
        self.out.extend_from_slice(body);
        if descriptor {
            self.out.extend_from_slice(&0x0807_4b50u32.to_le_bytes());
            self.out.extend_from_slice(&crc.to_le_bytes());
            self.out
                .extend_from_slice(&(body.len() as u32).to_le_bytes());
            self.out.extend_from_slice(&usize_.to_le_bytes());
        }
        let mut c = Vec::new();
        c.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        c.extend_from_slice(&20u16.to_le_bytes());
        c.extend_from_slice(&20u16.to_le_bytes());
        c.extend_from_slice(&flags.to_le_bytes());
        c.extend_from_slice(&method.to_le_bytes());
        c.extend_from_slice(&[0, 0, 0x21, 0]);
        c.extend_from_slice(&crc.to_le_bytes());
        c.extend_from_slice(&(body.len() as u32).to_le_bytes());
        c.extend_from_slice(&usize_.to_le_bytes());
        c.extend_from_slice(&(name.len() as u16).to_le_bytes());
        c.extend_from_slice(&[0; 12]);
        c.extend_from_slice(&lho.to_le_bytes());
        c.extend_from_slice(name.as_bytes());
        self.cd.extend_from_slice(&c);
        self.n += 1;
        self
    }

    pub fn finish(&self) -> Vec<u8> {
        let mut out = self.out.clone();
        let at = out.len() as u32;
        out.extend_from_slice(&self.cd);
        out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&self.n.to_le_bytes());
        out.extend_from_slice(&self.n.to_le_bytes());
        out.extend_from_slice(&(self.cd.len() as u32).to_le_bytes());
        out.extend_from_slice(&at.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }
}

pub fn zip(members: &[(&str, &[u8])], method: Method) -> Vec<u8> {
    let mut z = Zip::default();
    for (n, d) in members {
        z.add(n, d, method, false);
    }
    z.finish()
}

pub fn xz(data: &[u8]) -> Vec<u8> {
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn bz2(data: &[u8]) -> Vec<u8> {
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// An `ar` archive (a `.deb` is one).
pub fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = b"!<arch>\n".to_vec();
    for (name, data) in members {
        let h = format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            format!("{name}/"),
            0,
            0,
            0,
            100644,
            data.len()
        );
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}

/// A cpio archive, "newc" format (initramfs).
pub fn cpio(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let pad = |out: &mut Vec<u8>| {
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    };
    let all = members
        .iter()
        .map(|(n, d)| (*n, *d, 0o100644))
        .chain(std::iter::once(("TRAILER!!!", &b""[..], 0)));
    for (i, (name, data, mode)) in all.enumerate() {
        out.extend_from_slice(
            format!(
                "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
                i + 1,
                mode,
                0,
                0,
                1,
                0,
                data.len(),
                0,
                0,
                0,
                0,
                name.len() + 1,
                0
            )
            .as_bytes(),
        );
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        pad(&mut out);
        out.extend_from_slice(data);
        pad(&mut out);
    }
    out
}

/// (path, match) of every finding.
fn places(out: &std::process::Output) -> BTreeSet<(String, String)> {
    findings(out)
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["match"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn json_scan(sf: &std::path::Path, target: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["--format", "json", "--secret-file", sf.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(target);
    scan(&args)
}

#[test]
fn every_archive_form_alone_and_nested_is_found_once_with_its_chain_and_kind() {
    let t = tempfile::tempdir().unwrap();
    let s = secret("nest");
    let sf = write_secret(t.path(), "api.key", &s);
    let props = [b"db.password=".as_slice(), &s, b"\n"].concat();
    let conf_zip = zip(&[("conf/app.properties", &props)], Method::Deflate);
    let stored_zip = zip(&[("k.txt", &s)], Method::Stored);
    let mut dd = Zip::default();
    dd.add(
        "META-INF/MANIFEST.MF",
        b"Manifest-Version: 1.0\n",
        Method::Deflate,
        true,
    )
    .add("META-INF/x.cfg", &props, Method::Deflate, true)
    .add(
        "y.bin",
        &[b"xx".as_slice(), &s, b"PK\x07\x08yy"].concat(),
        Method::Stored,
        true,
    );
    let dd_jar = dd.finish();
    let inner_jar = zip(
        &[("BOOT-INF/classes/app.properties", &props)],
        Method::Deflate,
    );
    let mut war = Zip::default();
    war.add("WEB-INF/web.xml", b"<web-app/>", Method::Deflate, false)
        .add("WEB-INF/lib/inner.jar", &inner_jar, Method::Stored, false);
    let war = war.finish();
    let app_jar = zip(&[("cfg/k", &s)], Method::Deflate);
    let backup = gz(&layer_tar(&[("app.jar", &app_jar)]));
    let deb = ar(&[
        ("debian-binary", b"2.0\n"),
        (
            "control.tar.xz",
            &xz(&layer_tar(&[("control", b"Package: x\n")])),
        ),
        ("data.tar.xz", &xz(&layer_tar(&[("etc/key", &s)]))),
    ]);
    let initrd = gz(&cpio(&[("etc/key", &s), ("init", b"#!/bin/sh\n")]));
    let tar_in_tar = layer_tar(&[("inner/y.gz", &gz(&s))]);
    let plain_tar = layer_tar(&[("k", &s)]);
    let layer = layer_tar(&[
        ("app/conf.zip", &conf_zip),
        ("app/stored.zip", &stored_zip),
        ("app/dd.jar", &dd_jar),
        ("var/s.xz", &xz(&s)),
        ("var/s.bz2", &bz2(&s)),
        ("var/b.tar.xz", &xz(&layer_tar(&[("etc/key", &s)]))),
        ("var/cache/p.deb", &deb),
        ("boot/init.cpio.gz", &initrd),
        ("srv/app.war", &war),
        ("srv/backup.tar.gz", &backup),
        ("srv/x.tar", &tar_in_tar),
        ("srv/plain.tar", &plain_tar),
        ("etc/clean.zip", &zip(&[("a", b"nothing")], Method::Deflate)),
    ]);
    let want: BTreeSet<(String, String)> = [
        ("app/conf.zip!/conf/app.properties", "zip:exact"),
        ("app/stored.zip!/k.txt", "exact"),
        ("app/dd.jar!/META-INF/x.cfg", "zip:exact"),
        ("app/dd.jar!/y.bin", "exact"),
        ("var/s.xz", "xz:exact"),
        ("var/s.bz2", "bzip2:exact"),
        ("var/b.tar.xz!/etc/key", "xz:exact"),
        ("var/cache/p.deb!/data.tar.xz!/etc/key", "xz:exact"),
        ("boot/init.cpio.gz!/etc/key", "gzip:exact"),
        (
            "srv/app.war!/WEB-INF/lib/inner.jar!/BOOT-INF/classes/app.properties",
            "zip:exact",
        ),
        ("srv/backup.tar.gz!/app.jar!/cfg/k", "zip:exact"),
        ("srv/x.tar!/inner/y.gz", "gzip:exact"),
        ("srv/plain.tar!/k", "exact"),
    ]
    .iter()
    .map(|(p, k)| (p.to_string(), k.to_string()))
    .collect();
    // The same layer uncompressed (ranges, then walked), gzip (streamed)
    // and as a plain tar target.
    for (name, blob, mt) in [
        (
            "plain",
            layer.clone(),
            "application/vnd.oci.image.layer.v1.tar",
        ),
        (
            "gzip",
            gz(&layer),
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
    ] {
        let img = t.path().join(name);
        oci_layout(&img, &[(blob.clone(), mt)], &config(&[], &[]));
        let out = json_scan(&sf, img.to_str().unwrap(), &[]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{name}: {}",
            util::text(&out.stdout)
        );
        assert_never_printed(&out, &s);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["incomplete"], serde_json::json!([]), "{name}");
        assert_eq!(places(&out), want, "{name}: {:#?}", findings(&out));
        assert_eq!(findings(&out).len(), want.len(), "{name}: each copy once");
        assert!(findings(&out).iter().all(|f| f["layer"] == digest(&blob)));
    }
    let tar = t.path().join("layer.tar");
    std::fs::write(&tar, &layer).unwrap();
    let out = json_scan(&sf, tar.to_str().unwrap(), &[]);
    assert_eq!(places(&out), want);
    // The text report shows the chain.
    let out = scan(&["--secret-file", sf.to_str().unwrap(), tar.to_str().unwrap()]);
    let text = util::text(&out.stdout);
    assert!(
        text.contains(
            "layer.tar srv/app.war!/WEB-INF/lib/inner.jar!/BOOT-INF/classes/app.properties: secret"
        ) && text.contains("as zip:exact"),
        "{text}"
    );
}

/// `key` inside `levels` tar.gz files, each inside the next.
fn nested_targz(levels: usize, key: &[u8]) -> Vec<u8> {
    let mut cur = gz(&layer_tar(&[("key", key)]));
    for i in (1..levels).rev() {
        cur = gz(&layer_tar(&[(&format!("l{}.tar.gz", i + 1), &cur)]));
    }
    cur
}

#[test]
fn b5_nesting_past_the_limit_and_unknown_formats_are_incomplete_exit_2_never_clean() {
    let t = tempfile::tempdir().unwrap();
    let s = secret("deep");
    let sf = write_secret(t.path(), "k", &s);
    let tar = |name: &str, files: &[(&str, &[u8])]| {
        let p = t.path().join(name);
        std::fs::write(&p, layer_tar(files)).unwrap();
        p.display().to_string()
    };
    // Four deep (the hostile review's case): found with the defaults.
    let four = tar("four.tar", &[("srv/l1.tar.gz", &nested_targz(4, &s))]);
    let out = json_scan(&sf, &four, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", util::text(&out.stdout));
    assert!(places(&out).contains(&(
        "srv/l1.tar.gz!/l2.tar.gz!/l3.tar.gz!/l4.tar.gz!/key".to_string(),
        "gzip:exact".to_string()
    )));
    // Past the limit: INCOMPLETE, exit 2, the text says so.
    let out = json_scan(&sf, &four, &["--max-nesting", "4"]);
    assert_eq!(out.status.code(), Some(2), "{}", util::text(&out.stdout));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let inc = v["incomplete"].as_array().unwrap();
    assert!(
        inc.iter().any(|i| i.as_str().unwrap().contains(
            "srv/l1.tar.gz!/l2.tar.gz!/l3.tar.gz: not decoded: gzip nested deeper than --max-nesting 4"
        )),
        "{inc:?}"
    );
    assert_eq!(v["clean"], false);
    let deep = tar("deep.tar", &[("srv/l1.tar.gz", &nested_targz(6, &s))]);
    let out = scan(&["--secret-file", sf.to_str().unwrap(), &deep]);
    assert_eq!(out.status.code(), Some(2), "{}", util::text(&out.stdout));
    let text = util::text(&out.stdout);
    assert!(
        text.contains("INCOMPLETE ") && text.contains("NOT proven clean"),
        "{text}"
    );
    // --max-nesting 0: nothing inside a layer is decoded, so a clean gzip
    // file is not proof either.
    let one = tar("one.tar", &[("a.gz", &gz(b"harmless"))]);
    assert_eq!(json_scan(&sf, &one, &[]).status.code(), Some(0));
    assert_eq!(
        json_scan(&sf, &one, &["--max-nesting", "0"]).status.code(),
        Some(2)
    );
    // Formats privy does not decode: INCOMPLETE by name.
    for (name, head) in [
        ("x.7z", &b"7z\xbc\xaf\x27\x1c\x00\x04rest"[..]),
        ("x.rar", b"Rar!\x1a\x07\x01\x00rest"),
        ("x.lz4", b"\x04\x22\x4d\x18rest"),
        ("x.Z", b"\x1f\x9d\x90rest"),
    ] {
        let p = tar(&format!("{name}.tar"), &[(name, head)]);
        let out = json_scan(&sf, &p, &[]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{name}: {}",
            util::text(&out.stdout)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            v["incomplete"][0]
                .as_str()
                .unwrap()
                .contains(&format!("{name}: not decoded")),
            "{name}: {v}"
        );
    }
}

#[test]
fn zip_damage_hidden_entries_and_unread_methods_are_incomplete() {
    let t = tempfile::tempdir().unwrap();
    let s = secret("zipdmg");
    let sf = write_secret(t.path(), "k", &s);
    let good = zip(&[("a.txt", b"hello"), ("b.txt", &s)], Method::Deflate);
    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    // A CRC that does not match.
    let mut z = Zip::default();
    z.raw("a.txt", &deflate_raw(b"hello"), 8, false, 1234, 5);
    cases.push(("crc.zip", z.finish(), "damaged"));
    // Cut short inside the central directory.
    cases.push(("cut.zip", good[..good.len() - 30].to_vec(), "ends"));
    // A member the central directory names at an offset with no header.
    let mut hidden = good.clone();
    let cd = hidden.len() - 22 - (46 + 5) * 2;
    hidden[cd + 42] = 3; // b.txt's local header offset, moved
    cases.push(("hidden.zip", hidden, "not found in the stream"));
    // Encrypted, and a method privy does not decode.
    let mut z = Zip::default();
    z.raw("lzma.bin", b"\x00\x01\x02\x03", 14, false, 0, 4);
    cases.push(("lzma.zip", z.finish(), "method 14 (lzma)"));
    for (name, data, why) in cases {
        let p = t.path().join(format!("{name}.tar"));
        std::fs::write(&p, layer_tar(&[(name, &data)])).unwrap();
        let out = json_scan(&sf, p.to_str().unwrap(), &[]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let inc = v["incomplete"].to_string();
        assert!(inc.contains(name) && inc.contains(why), "{name}: {inc}");
        assert_ne!(out.status.code(), Some(0), "{name}");
    }
}

/// A raw deflate stream of `gib` GiB of zeros, built from one compressed
/// MiB repeated (full flushes make each block stand alone).
fn deflate_bomb(mib: usize) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&vec![0u8; 1 << 20]).unwrap();
    e.flush().unwrap();
    let block = std::mem::take(e.get_mut());
    let mut out = Vec::with_capacity(block.len() * mib + 8);
    for _ in 0..mib {
        out.extend_from_slice(&block);
    }
    out.extend_from_slice(&[0x03, 0x00]); // a final, empty fixed block
    out
}

#[test]
fn zip_gzip_xz_and_bzip2_bombs_stop_at_the_expansion_limit_in_bounded_memory_and_time() {
    let t = tempfile::tempdir().unwrap();
    let sf = write_secret(t.path(), "k", &secret("bomb"));
    let gib = 2048; // MiB of zeros each bomb expands to
    let body = deflate_bomb(gib);
    let mut z = Zip::default();
    z.raw("zeros.bin", &body, 8, false, 0, u32::MAX - 1);
    let zip_bomb = z.finish();
    let mut gzip_bomb = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    gzip_bomb.extend_from_slice(&body);
    gzip_bomb.extend_from_slice(&[0; 8]);
    // xz and bzip2 streams may be concatenated: one compressed 16 MiB
    // repeated.
    let (x1, b1) = (xz(&vec![0u8; 16 << 20]), bz2(&vec![0u8; 16 << 20]));
    let xz_bomb: Vec<u8> = x1
        .iter()
        .copied()
        .cycle()
        .take(x1.len() * gib / 16)
        .collect();
    let bz_bomb: Vec<u8> = b1
        .iter()
        .copied()
        .cycle()
        .take(b1.len() * gib / 16)
        .collect();
    for (name, bomb) in [
        ("bomb.zip", zip_bomb),
        ("bomb.gz", gzip_bomb),
        ("bomb.xz", xz_bomb),
        ("bomb.bz2", bz_bomb),
    ] {
        let p = t.path().join(format!("{name}.tar"));
        std::fs::write(&p, layer_tar(&[(&format!("srv/{name}"), &bomb)])).unwrap();
        let started = std::time::Instant::now();
        let out = scan(&[
            "--stats",
            "--format",
            "json",
            "--secret-file",
            sf.to_str().unwrap(),
            p.to_str().unwrap(),
        ]);
        let took = started.elapsed();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{name}: {}",
            util::text(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let inc = v["incomplete"].to_string();
        assert!(
            inc.contains(&format!("srv/{name}")) && inc.contains("expansion limit"),
            "{name}: {inc}"
        );
        // Stopped near the limit (100 x a few MiB + 64 MiB), not at 4 GiB.
        assert!(
            v["bytes"].as_u64().unwrap() < 1 << 30,
            "{name}: {}",
            v["bytes"]
        );
        let stats = util::text(&out.stderr);
        let rss: u64 = stats
            .split("peak RSS ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{stats}"));
        assert!(rss < 400, "{name}: peak RSS {rss} MiB");
        assert!(took.as_secs() < 120, "{name}: {took:?}");
        eprintln!(
            "{name}: {} compressed bytes, stopped in {took:?}, peak RSS {rss} MiB",
            bomb.len()
        );
    }
}
