//! The encoded forms of a secret the matcher looks for: base64 and
//! base64url (unpadded, at each of the three byte alignments), hex in both
//! cases and as dumps print it (`od -t x1`, `xxd`, `od -b`), UTF-16LE,
//! and the canonical text escapings (percent-encoding, JSON string
//! escapes) with a map from each form byte back to the secret byte it
//! spells. Outputs are zeroized by the caller (they are secret too).

const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 of `data` without padding, keeping only the characters fully
/// determined by `data` (a trailing partial group yields 1 or 2 chars for
/// 1 or 2 bytes: the bits that do not depend on what follows).
pub fn base64(data: &[u8], url: bool) -> Vec<u8> {
    let a = if url { URL } else { STD };
    let mut out = Vec::with_capacity(data.len().div_ceil(3) * 4);
    let mut chunks = data.chunks_exact(3);
    for c in &mut chunks {
        let n = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
        out.extend_from_slice(&[
            a[(n >> 18) as usize & 63],
            a[(n >> 12) as usize & 63],
            a[(n >> 6) as usize & 63],
            a[n as usize & 63],
        ]);
    }
    match *chunks.remainder() {
        [x] => out.push(a[(x >> 2) as usize]),
        [x, y] => {
            out.push(a[(x >> 2) as usize]);
            out.push(a[(((x & 3) << 4) | (y >> 4)) as usize]);
        }
        _ => {}
    }
    out
}

/// Hex, lower or upper case.
pub fn hex(data: &[u8], upper: bool) -> Vec<u8> {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut out = Vec::with_capacity(data.len() * 2);
    for &b in data {
        out.push(digits[(b >> 4) as usize]);
        out.push(digits[(b & 15) as usize]);
    }
    out
}

/// Lower-case hex bytes separated by single spaces (`od -A n -t x1`).
pub fn hex_spaced(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * 3);
    for (i, &b) in data.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(&hex(&[b], false));
    }
    out
}

/// Hex in groups of two bytes (`xxd`'s default dump), the first group
/// holding one byte when `odd` (the secret starting mid-group).
pub fn hex_grouped(data: &[u8], odd: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * 5 / 2 + 2);
    for (i, &b) in data.iter().enumerate() {
        if i > 0 && (i + usize::from(odd)) % 2 == 0 {
            out.push(b' ');
        }
        out.extend_from_slice(&hex(&[b], false));
    }
    out
}

/// Three-digit octal bytes separated by spaces (`od -b`, `od -t o1`).
pub fn octal_spaced(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * 4);
    for (i, &b) in data.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(&[b'0' + (b >> 6), b'0' + ((b >> 3) & 7), b'0' + (b & 7)]);
    }
    out
}

/// UTF-16LE: of the text when the secret is UTF-8, else of each byte as
/// a Latin-1 character (what Windows tools write for either).
pub fn utf16le(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * 2);
    match std::str::from_utf8(data) {
        Ok(s) => {
            for u in s.encode_utf16() {
                out.extend_from_slice(&u.to_le_bytes());
            }
        }
        Err(_) => {
            for &b in data {
                out.extend_from_slice(&[b, 0]);
            }
        }
    }
    out
}

/// A text form and, for each of its bytes, the secret offset of the
/// unit (`%2F`, `\n`, or one plain byte) it belongs to.
pub struct Mapped {
    pub bytes: Vec<u8>,
    pub map: Vec<u32>,
}

fn mapped(data: &[u8], unit: impl Fn(u8, &mut Vec<u8>)) -> Mapped {
    let mut bytes = Vec::with_capacity(data.len() * 2);
    let mut map = Vec::with_capacity(data.len() * 2);
    for (i, &b) in data.iter().enumerate() {
        let before = bytes.len();
        unit(b, &mut bytes);
        map.resize(bytes.len(), i as u32);
        debug_assert!(bytes.len() > before);
    }
    Mapped { bytes, map }
}

/// Percent-encoding of every byte outside RFC 3986's unreserved set, upper
/// case (`encodeURIComponent`, Python's `quote(safe="")`).
pub fn percent(data: &[u8]) -> Mapped {
    mapped(data, |b, out| {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b);
        } else {
            out.push(b'%');
            out.extend_from_slice(&hex(&[b], true));
        }
    })
}

/// A JSON string's escaping (quotes, backslashes, control characters;
/// what `json.dumps` and `JSON.stringify` write).
pub fn json_escaped(data: &[u8]) -> Mapped {
    mapped(data, |b, out| match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x0c => out.extend_from_slice(b"\\f"),
        b if b < 0x20 => {
            out.extend_from_slice(b"\\u00");
            out.extend_from_slice(&hex(&[b], false));
        }
        b => out.push(b),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_encoding_without_padding() {
        assert_eq!(base64(b"Man", false), b"TWFu");
        assert_eq!(base64(b"Ma", false), b"TW"); // 3rd char depends on what follows
        assert_eq!(base64(b"M", false), b"T");
        assert_eq!(base64(&[0xfb, 0xff, 0xbf], false), b"+/+/");
        assert_eq!(base64(&[0xfb, 0xff, 0xbf], true), b"-_-_");
        assert_eq!(hex(&[0xde, 0xad, 0x01], false), b"dead01");
        assert_eq!(hex(&[0xde, 0xad, 0x01], true), b"DEAD01");
    }

    #[test]
    fn dump_and_text_forms_match_their_tools() {
        assert_eq!(hex_grouped(b"abcde", false), b"6162 6364 65");
        assert_eq!(hex_grouped(b"abcde", true), b"61 6263 6465");
        assert_eq!(octal_spaced(b"a\n"), b"141 012");
        assert_eq!(utf16le("aé".as_bytes()), b"a\0\xe9\0");
        let p = percent(b"to/k en");
        assert_eq!(p.bytes, b"to%2Fk%20en");
        assert_eq!(p.map, [0, 1, 2, 2, 2, 3, 4, 4, 4, 5, 6]);
        let j = json_escaped(b"a\n\"b");
        assert_eq!(j.bytes, b"a\\n\\\"b");
        assert_eq!(j.map, [0, 1, 1, 2, 2, 3]);
    }
}
