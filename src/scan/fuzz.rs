//! Property tests of every reader the scanner runs on image bytes: the tar
//! reader, the gzip, zstd, xz and bzip2 decoders, the zip, ar and cpio
//! walkers, and the matcher's text-form decoding. Inputs are valid
//! archives mutated (bytes flipped, cut short, bytes inserted) and plain
//! random bytes. Each case must end without a panic, within a time bound
//! and the expansion budget, and any error must be one line.
//!
//! `PROPTEST_CASES` sets the cases per property (default 200; CI runs the
//! default, about 2,000 cases in all).

use super::archives;
use super::decode::{decoder, Budget, Input, Metered};
use super::detect::{detect, Codec};
use super::matcher::{Hit, Matcher};
use super::tarstream::TarReader;
use super::zip;
use super::{MatchKind, Needle};
use proptest::prelude::*;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// How long one case may take (debug build, shared machine).
const CASE_LIMIT: Duration = Duration::from_secs(5);

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(200);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Flip bytes, insert bytes and cut `seed` as `m` says.
#[derive(Debug, Clone)]
struct Mutation {
    flips: Vec<(usize, u8)>,
    inserts: Vec<(usize, Vec<u8>)>,
    cut: Option<usize>,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (
        prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        prop::collection::vec(
            (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16)),
            0..2,
        ),
        prop::option::of(any::<usize>()),
    )
        .prop_map(|(flips, inserts, cut)| Mutation {
            flips,
            inserts,
            cut,
        })
}

fn apply(seed: &[u8], m: &Mutation) -> Vec<u8> {
    let mut v = seed.to_vec();
    if v.is_empty() {
        return v;
    }
    for (at, x) in &m.flips {
        let i = at % v.len();
        v[i] ^= x | 1;
    }
    for (at, bytes) in &m.inserts {
        let i = at % (v.len() + 1);
        v.splice(i..i, bytes.iter().copied());
    }
    if let Some(c) = m.cut {
        v.truncate(c % (v.len() + 1));
    }
    v
}

fn one_line(e: &impl std::fmt::Display) -> Result<(), TestCaseError> {
    let s = e.to_string();
    prop_assert!(
        !s.contains('\n') && !s.is_empty(),
        "error is not one line: {s:?}"
    );
    Ok(())
}

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (p, d) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(d.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, p, *d).unwrap();
    }
    b.into_inner().unwrap()
}

fn compress(codec: Codec, data: &[u8]) -> Vec<u8> {
    match codec {
        Codec::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Codec::Zstd => zstd::stream::encode_all(data, 1).unwrap(),
        Codec::Xz => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Codec::Bzip2 => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Codec::Zip => unreachable!(),
    }
}

/// A small zip: a deflated member with a data descriptor, a stored one.
fn zip_seed() -> Vec<u8> {
    let mut out = Vec::new();
    let mut cd = Vec::new();
    let members: [(&[u8], &[u8], u16, bool); 2] = [
        (b"a/deflated.txt", b"hello hello hello hello world", 8, true),
        (b"stored.bin", b"\x00\x01PK\x07\x08 stored bytes", 0, false),
    ];
    for (name, data, method, dd) in members {
        let body = if method == 8 {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        } else {
            data.to_vec()
        };
        let crc = crc32fast::hash(data);
        let lho = out.len() as u32;
        let flags: u16 = if dd { 8 } else { 0 };
        let (hc, hs, hu) = if dd {
            (0, 0, 0)
        } else {
            (crc, body.len() as u32, data.len() as u32)
        };
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&[20, 0]);
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&method.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        for x in [hc, hs, hu] {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(name);
        out.extend_from_slice(&body);
        if dd {
            out.extend_from_slice(&0x0807_4b50u32.to_le_bytes());
            for x in [crc, body.len() as u32, data.len() as u32] {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        cd.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        cd.extend_from_slice(&[20, 0, 20, 0]);
        cd.extend_from_slice(&flags.to_le_bytes());
        cd.extend_from_slice(&method.to_le_bytes());
        cd.extend_from_slice(&[0; 4]);
        for x in [crc, body.len() as u32, data.len() as u32] {
            cd.extend_from_slice(&x.to_le_bytes());
        }
        cd.extend_from_slice(&(name.len() as u16).to_le_bytes());
        cd.extend_from_slice(&[0; 12]);
        cd.extend_from_slice(&lho.to_le_bytes());
        cd.extend_from_slice(name);
    }
    let at = out.len() as u32;
    out.extend_from_slice(&cd);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 2, 0, 2, 0]);
    out.extend_from_slice(&(cd.len() as u32).to_le_bytes());
    out.extend_from_slice(&at.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

fn ar_seed() -> Vec<u8> {
    let mut out = b"!<arch>\n".to_vec();
    for (name, data) in [("debian-binary", &b"2.0\n"[..]), ("data.tar", b"odd")] {
        out.extend_from_slice(
            format!(
                "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                format!("{name}/"),
                0,
                0,
                0,
                100644,
                data.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}

fn cpio_seed() -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in [("etc/x", &b"cpio data"[..]), ("TRAILER!!!", b"")] {
        out.extend_from_slice(
            format!(
                "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
                1, 0o100644, 0, 0, 1, 0, data.len(), 0, 0, 0, 0, name.len() + 1, 0
            )
            .as_bytes(),
        );
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out.extend_from_slice(data);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }
    out
}

fn run_tar(data: &[u8]) -> Result<(), TestCaseError> {
    let mut tr = TarReader::new(data);
    let mut buf = [0u8; 4096];
    for _ in 0..10_000 {
        match tr.next_entry() {
            Ok(Some(_)) => loop {
                match tr.read_data(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => return one_line(&e),
                }
            },
            Ok(None) => return Ok(()),
            Err(e) => return one_line(&e),
        }
    }
    prop_assert!(false, "tar reader did not end");
    Ok(())
}

/// Decode with a 16 MiB expansion budget; read everything.
fn run_codec(codec: Codec, data: &[u8]) -> Result<(), TestCaseError> {
    let budget = Budget::new(0, 16 << 20);
    let mut src: &[u8] = data;
    let mut input = Input::new(&mut src);
    let d = match decoder(codec, &mut input) {
        Ok(d) => d,
        Err(e) => return one_line(&e),
    };
    let mut m = Metered {
        r: d,
        budget: &budget,
    };
    match io::copy(&mut m, &mut io::sink()) {
        Ok(n) => prop_assert!(n <= (16 << 20) + (1 << 20)),
        Err(e) => one_line(&e)?,
    }
    Ok(())
}

fn run_zip(data: &[u8]) -> Result<(), TestCaseError> {
    let budget = Budget::new(0, 16 << 20);
    let mut src: &[u8] = data;
    let mut input = Input::new(&mut src);
    let mut names = 0;
    let res = zip::walk(&mut input, &budget, &mut |m, r| {
        names += 1;
        assert!(!m.name.contains('\n'));
        io::copy(r, &mut io::sink()).map(|_| ())
    });
    match res {
        Ok(sum) => {
            for n in &sum.notes {
                one_line(n)?;
            }
        }
        Err(e) => one_line(&e)?,
    }
    Ok(())
}

fn run_simple(data: &[u8], cpio: bool) -> Result<(), TestCaseError> {
    let mut src: &[u8] = data;
    let mut input = Input::new(&mut src);
    let mut visit = |name: &str, r: &mut dyn Read| {
        assert!(!name.contains('\n'));
        io::copy(r, &mut io::sink()).map(|_| ())
    };
    let res = if cpio {
        archives::walk_cpio(&mut input, &mut visit)
    } else {
        archives::walk_ar(&mut input, &mut visit)
    };
    if let Err(e) = res {
        one_line(&e)?;
    }
    Ok(())
}

fn timed(f: impl FnOnce() -> Result<(), TestCaseError>) -> Result<(), TestCaseError> {
    let t = Instant::now();
    f()?;
    prop_assert!(t.elapsed() < CASE_LIMIT, "took {:?}", t.elapsed());
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn tar_reader_survives_mutated_and_random_tars(m in mutation(), noise in prop::collection::vec(any::<u8>(), 0..2048)) {
        let seed = tar_of(&[("a/b.txt", b"hello"), (&"n".repeat(150), &[7u8; 700])]);
        timed(|| run_tar(&apply(&seed, &m)))?;
        timed(|| run_tar(&noise))?;
    }

    #[test]
    fn compression_decoders_survive_mutated_streams(m in mutation(), which in 0usize..4) {
        let codec = [Codec::Gzip, Codec::Zstd, Codec::Xz, Codec::Bzip2][which];
        let seed = compress(codec, &tar_of(&[("k", b"secret-ish bytes, repeated, repeated, repeated")]));
        let data = apply(&seed, &m);
        timed(|| run_codec(codec, &data))?;
        // Whatever detect says about the mutated bytes, it does not panic.
        let _ = detect(&data);
    }

    #[test]
    fn zip_walker_survives_mutated_zips(m in mutation()) {
        let seed = zip_seed();
        timed(|| run_zip(&apply(&seed, &m)))?;
    }

    #[test]
    fn ar_and_cpio_walkers_survive_mutated_archives(m in mutation()) {
        timed(|| run_simple(&apply(&ar_seed(), &m), false))?;
        timed(|| run_simple(&apply(&cpio_seed(), &m), true))?;
    }

    #[test]
    fn matcher_survives_random_data_with_escapes(
        noise in prop::collection::vec(
            prop_oneof![any::<u8>(), Just(b'%'), Just(b'\\'), Just(b'\''), Just(b' '), Just(b'\n')],
            0..4096,
        ),
    ) {
        let m = Matcher::new(&[Needle::new("s", b"a%2F\\n-'\\''0123456789abcdef/+= \n".repeat(3))], 32);
        let mut hits: Vec<Hit> = Vec::new();
        timed(|| { m.scan_all(&noise, &mut hits); Ok(()) })?;
        for h in &hits {
            prop_assert!(h.pos + h.len <= noise.len() as u64);
        }
    }

    #[test]
    fn a_secret_percent_encoded_with_any_safe_set_is_found_whole(
        safe in prop::collection::vec(any::<bool>(), 8),
        lower in any::<bool>(),
    ) {
        // Reserved characters spaced well apart, as in tokens and keys.
        let secret = b"AbCdEfGhIjKlMnOpQrStUvWxYz0123/456789abcdefghijklm+nopqrstuvwxyzABCDEFGH=IJKLMNOPQRSTUVWXYZ01234:56789abcdefghijklmn@".to_vec();
        let reserved = b"/+=:@";
        let mut enc = String::from("https://h/?t=");
        for &b in &secret {
            let k = reserved.iter().position(|&r| r == b);
            if k.is_some_and(|k| !safe[k]) {
                if lower { enc.push_str(&format!("%{b:02x}")) } else { enc.push_str(&format!("%{b:02X}")) }
            } else {
                enc.push(b as char);
            }
        }
        enc.push('&');
        let m = Matcher::new(&[Needle::new("s", secret.clone())], 32);
        let mut hits: Vec<Hit> = Vec::new();
        m.scan_all(enc.as_bytes(), &mut hits);
        let whole = hits.iter().any(|h| {
            let k = m.kind(h);
            (k == MatchKind::Percent || k == MatchKind::Exact) && h.len as usize >= secret.len()
        });
        prop_assert!(whole, "{enc}: {hits:?}");
    }
}
