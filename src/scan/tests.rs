//! Matcher unit tests: every encoding, the min-match rule, whole-only short
//! secrets, region splits, and no false positives on random data or a real
//! binary.

use super::matcher::{Hit, Matcher};
use super::{encode, MatchKind, Needle};

/// Deterministic bytes (xorshift), `n` of them.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn printable(seed: u64, n: usize) -> Vec<u8> {
    noise(seed, n).into_iter().map(|b| b'!' + b % 90).collect()
}

fn find(m: &Matcher, hay: &[u8]) -> Vec<(MatchKind, u64, u64)> {
    let mut hits = Vec::new();
    m.scan_all(hay, &mut hits);
    // As the engine's tidy step: drop hits inside a longer one.
    let covered = |h: &Hit| {
        hits.iter().any(|o| {
            o != h
                && o.pos <= h.pos
                && h.pos + h.len <= o.pos + o.len
                && (o.len > h.len || o.form < h.form)
        })
    };
    let mut v: Vec<_> = hits
        .iter()
        .filter(|h| !covered(h))
        .map(|h| (m.kind(h), h.pos, h.len))
        .collect();
    v.sort();
    v.dedup();
    v
}

fn plant(hay: &mut Vec<u8>, at: usize, what: &[u8]) {
    hay.splice(at..at + what.len(), what.iter().copied());
}

#[test]
fn exact_copy_is_found_with_offset_and_length() {
    let s = printable(1, 300);
    let m = Matcher::new(&[Needle::new("s", s.clone())], 32);
    let mut hay = noise(2, 10_000);
    plant(&mut hay, 4321, &s);
    assert_eq!(find(&m, &hay), vec![(MatchKind::Exact, 4321, 300)]);
}

#[test]
fn substring_at_min_match_is_found_one_shorter_is_not() {
    let s = printable(3, 500);
    let m = Matcher::new(&[Needle::new("s", s.clone())], 32);
    for (len, found) in [(31, false), (32, true), (48, true)] {
        let mut hay = noise(4, 5000);
        plant(&mut hay, 1001, &s[100..100 + len]);
        let got = find(&m, &hay);
        if found {
            assert_eq!(got, vec![(MatchKind::Substring, 1001, len as u64)], "{len}");
        } else {
            assert!(got.is_empty(), "{len}: {got:?}");
        }
    }
}

#[test]
fn min_match_is_honoured_at_every_sample_phase() {
    // Sampling must not miss a 32-byte run wherever it starts.
    let s = printable(5, 200);
    let m = Matcher::new(&[Needle::new("s", s.clone())], 32);
    for at in 0..60 {
        let mut hay = noise(6, 400);
        plant(&mut hay, 100 + at, &s[50..82]);
        assert_eq!(
            find(&m, &hay),
            vec![(MatchKind::Substring, (100 + at) as u64, 32)],
            "at {at}"
        );
    }
}

#[test]
fn short_secrets_match_only_whole() {
    let s = printable(7, 20);
    let m = Matcher::new(&[Needle::new("pin", s.clone())], 32);
    let mut hay = noise(8, 3000);
    plant(&mut hay, 777, &s);
    plant(&mut hay, 2000, &s[..19]);
    assert_eq!(find(&m, &hay), vec![(MatchKind::Exact, 777, 20)]);
    // A tiny secret (shorter than the index window) too.
    let t = b"x7Q!z".to_vec();
    let m = Matcher::new(&[Needle::new("tiny", t.clone())], 32);
    let mut hay = vec![b'.'; 100];
    plant(&mut hay, 40, &t);
    plant(&mut hay, 80, &t[..4]);
    assert_eq!(find(&m, &hay), vec![(MatchKind::Exact, 40, 5)]);
}

#[test]
fn base64_at_every_alignment_and_wrapped_is_found() {
    let s = noise(9, 600);
    let m = Matcher::new(&[Needle::new("s", s.clone())], 32);
    for pre in 0..3 {
        // The secret inside a larger blob, starting at each byte alignment.
        let mut blob = noise(10, pre);
        blob.extend_from_slice(&s);
        blob.extend_from_slice(&noise(11, 5));
        let enc = encode::base64(&blob, false);
        // Wrapped at 76 columns like `base64`.
        let wrapped: Vec<u8> = enc
            .chunks(76)
            .flat_map(|c| c.iter().copied().chain(std::iter::once(b'\n')))
            .collect();
        for hay_enc in [enc.clone(), wrapped] {
            let mut hay = b"data: ".to_vec();
            hay.extend_from_slice(&hay_enc);
            let got = find(&m, &hay);
            assert_eq!(got.len(), 1, "alignment {pre}: {got:?}");
            assert_eq!(got[0].0, MatchKind::Base64);
            assert!(got[0].2 >= 790, "alignment {pre}: {got:?}");
        }
    }
}

#[test]
fn base64url_and_hex_in_both_cases_and_spaced_are_found() {
    // Bytes whose base64 has '+' and '/' so base64url differs.
    let mut s = vec![0xfb_u8, 0xff, 0xbf];
    s.extend(noise(12, 200));
    let m = Matcher::new(&[Needle::new("s", s.clone())], 32);
    let cases: Vec<(MatchKind, Vec<u8>)> = vec![
        (MatchKind::Base64Url, encode::base64(&s, true)),
        (MatchKind::Hex, encode::hex(&s, false)),
        (MatchKind::HexUpper, encode::hex(&s, true)),
        (MatchKind::Hex, encode::hex_spaced(&s)),
    ];
    for (kind, enc) in cases {
        let mut hay = noise(13, 100);
        hay.extend_from_slice(&enc);
        hay.extend(noise(14, 100));
        let got = find(&m, &hay);
        assert_eq!(got, vec![(kind, 100, enc.len() as u64)], "{kind}");
    }
    // `xxd -p`: 60 hex chars a line; each line alone is under 2*32 chars.
    let hex = encode::hex(&s, false);
    let mut hay: Vec<u8> = hex
        .chunks(60)
        .flat_map(|c| c.iter().copied().chain(std::iter::once(b'\n')))
        .collect();
    hay.insert(0, b'\n');
    let got = find(&m, &hay);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, MatchKind::Hex);
}

#[test]
fn encoded_substring_below_min_match_is_not_found() {
    let s = noise(15, 300);
    let m = Matcher::new(&[Needle::new("s", s.clone())], 32);
    // 30 bytes of the secret, hex encoded: 60 chars < 64.
    let mut hay = noise(16, 50);
    hay.extend(encode::hex(&s[90..120], false));
    hay.extend(noise(17, 50));
    assert!(find(&m, &hay).is_empty());
}

#[test]
fn a_match_split_across_regions_is_reported_once() {
    let s = printable(18, 1000);
    let m = Matcher::new(&[Needle::new("s", s.clone())], 32);
    let mut hay = noise(19, 20_000);
    plant(&mut hay, 5000, &s);
    for cut in [4990u64, 5000, 5001, 5024, 5025, 5500, 5990, 5999, 6000] {
        let mut hits: Vec<Hit> = Vec::new();
        let margin = m.margin as u64 + 8;
        for (from, to) in [(0u64, cut), (cut, hay.len() as u64)] {
            let lo = from.saturating_sub(margin) as usize;
            let hi = ((to + margin) as usize).min(hay.len());
            m.scan(&hay[lo..hi], lo as u64, from, to, &mut hits);
        }
        assert_eq!(hits.len(), 1, "cut {cut}: {hits:?}");
        assert_eq!((hits[0].pos, hits[0].len), (5000, 1000), "cut {cut}");
    }
}

#[test]
fn random_data_gives_no_false_positives() {
    // Sizes across 40..4000 bytes (the bench's range); the bench checks
    // 100 secrets over 1 GiB in a release build.
    let needles: Vec<Needle> = (0..24)
        .map(|i| {
            Needle::new(
                format!("s{i}"),
                noise(100 + i, 40 + (i as usize * 167) % 3960),
            )
        })
        .collect();
    let m = Matcher::new(&needles, 32);
    for seed in 0..2 {
        let hay = noise(1000 + seed, 4 << 20);
        assert!(find(&m, &hay).is_empty(), "seed {seed}");
        let text = printable(2000 + seed, 4 << 20);
        assert!(find(&m, &text).is_empty(), "seed {seed}");
    }
}

#[test]
fn a_real_binary_gives_no_false_positives() {
    // busybox (the base image of the build tests) or, failing that, this
    // test binary: a large real file with tables, strings and code.
    let path = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| std::env::current_exe().unwrap());
    let hay = std::fs::read(&path).unwrap();
    let needles: Vec<Needle> = (0..20)
        .map(|i| Needle::new(format!("s{i}"), printable(300 + i, 64 + 100 * i as usize)))
        .collect();
    let m = Matcher::new(&needles, 32);
    assert!(find(&m, &hay).is_empty(), "{}", path.display());
}

#[test]
fn needle_debug_never_shows_the_bytes() {
    let n = Needle::new("api.key", b"hunter2-hunter2-hunter2".to_vec());
    let shown = format!("{n:?} {n:#?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(
        shown.contains("api.key") && shown.contains("23 bytes"),
        "{shown}"
    );
}

#[test]
fn a_secret_of_one_repeated_pattern_is_still_found_whole() {
    let s = b"ab".repeat(500);
    let m = Matcher::new(&[Needle::new("rep", s.clone())], 32);
    let mut hay = noise(40, 5000);
    plant(&mut hay, 1234, &s);
    let got = find(&m, &hay);
    assert!(got.contains(&(MatchKind::Exact, 1234, 1000)), "{got:?}");
}

#[test]
fn a_wrapped_encoding_longer_than_its_form_is_reported_once_across_regions() {
    // `od -A n -t x1` output: 16 bytes a line, " xx" each: the match in
    // the data is longer than the spaced-hex form (newlines added).
    let s = noise(50, 1000);
    let m = Matcher::new(&[Needle::new("s", s.clone())], 32);
    let od: Vec<u8> = s
        .chunks(16)
        .flat_map(|c| {
            let mut l: Vec<u8> = c
                .iter()
                .flat_map(|b| format!(" {b:02x}").into_bytes())
                .collect();
            l.push(b'\n');
            l
        })
        .collect();
    let mut hay = noise(51, 4000);
    hay.extend_from_slice(&od);
    hay.extend(noise(52, 4000));
    for cut in [4100u64, 5000, 6500, 7000] {
        let mut hits: Vec<Hit> = Vec::new();
        let margin = m.margin as u64 + 8;
        for (from, to) in [(0u64, cut), (cut, hay.len() as u64)] {
            let lo = from.saturating_sub(margin) as usize;
            let hi = ((to + margin) as usize).min(hay.len());
            m.scan(&hay[lo..hi], lo as u64, from, to, &mut hits);
        }
        let full: Vec<_> = hits
            .iter()
            .filter(|h| h.len as usize >= od.len() - 2)
            .collect();
        assert_eq!(full.len(), 1, "cut {cut}: {hits:?}");
        assert_eq!(full[0].pos, 4001, "cut {cut}");
    }
}

/// `xxd`, `hexdump -C` and `od -b` dumps, offsets and ASCII columns
/// included, as the tools print them.
fn dumps(s: &[u8]) -> Vec<(MatchKind, Vec<u8>)> {
    let printable = |l: &[u8]| -> String {
        l.iter()
            .map(|&b| {
                if (0x20..0x7f).contains(&b) {
                    b as char
                } else {
                    '.'
                }
            })
            .collect()
    };
    let (mut xxd, mut hd, mut od) = (String::new(), String::new(), String::new());
    for (i, line) in s.chunks(16).enumerate() {
        let (mut x, mut h) = (String::new(), String::new());
        for (j, b) in line.iter().enumerate() {
            x.push_str(&format!("{b:02x}"));
            if j % 2 == 1 {
                x.push(' ');
            }
            h.push_str(&format!("{b:02x} "));
            if j == 7 {
                h.push(' ');
            }
        }
        xxd.push_str(&format!("{:08x}: {x:<40} {}\n", i * 16, printable(line)));
        hd.push_str(&format!("{:08x}  {h:<49} |{}|\n", i * 16, printable(line)));
        od.push_str(&format!("{:07o}", i * 16));
        for b in line {
            od.push_str(&format!(" {b:03o}"));
        }
        od.push('\n');
    }
    vec![
        (MatchKind::Hex, xxd.into_bytes()),
        (MatchKind::Hex, hd.into_bytes()),
        (MatchKind::Octal, od.into_bytes()),
    ]
}

#[test]
fn dumps_with_offsets_and_ascii_columns_are_found_whole() {
    let s = printable(60, 300);
    let m = Matcher::new(&[Needle::new("s", s.clone())], 32);
    for (kind, d) in dumps(&s) {
        let mut hay = b"dump:\n".to_vec();
        hay.extend_from_slice(&d);
        let got = find(&m, &hay);
        assert_eq!(
            got.len(),
            1,
            "{kind}: {got:?}\n{}",
            String::from_utf8_lossy(&d)
        );
        assert_eq!(got[0].0, kind);
        assert!(got[0].2 as usize >= d.len() - 80, "{kind}: {got:?}");
    }
}
