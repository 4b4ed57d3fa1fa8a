//! The encoded forms of a secret the matcher looks for: base64 and
//! base64url (unpadded, at each of the three byte alignments) and hex in
//! both cases. Outputs are zeroized by the caller (they are secret too).

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
}
