//! What a file inside a layer is, by its first bytes: a compression privy
//! decodes (gzip, zstd, xz, bzip2), an archive it walks (tar, zip and its
//! family, ar as in `.deb`, cpio), a format it meets but cannot decode (7z,
//! rar, lz4, lzip, compress, rpm, cab, squashfs: the scan then says
//! INCOMPLETE), or plain data.
//!
//! Names never decide: a `.jar` is a zip because it starts with `PK\3\4`,
//! and a `layer.bin` holding gzip is gzip. Magic numbers are checked with
//! enough of the header that ordinary text and binaries do not match
//! (`compress` needs a valid flags byte, rpm a known lead version).

use super::tarstream::looks_like_tar;

/// How many bytes [`detect`] wants to see (a tar header block).
pub const HEAD: usize = 512;

/// A compression privy decodes as a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    Gzip,
    Zstd,
    Xz,
    Bzip2,
    /// A zip member compressed with deflate (or another zip method).
    Zip,
}

impl Codec {
    /// The label findings carry (`gzip:exact`).
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
            Codec::Xz => "xz",
            Codec::Bzip2 => "bzip2",
            Codec::Zip => "zip",
        }
    }
}

/// An archive privy walks member by member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Archive {
    Tar,
    Zip,
    /// `ar` (Debian packages, static libraries).
    Ar,
    /// cpio, "newc"/"crc" (`070701`/`070702`) or portable ASCII (`070707`).
    Cpio,
}

impl Archive {
    pub fn as_str(self) -> &'static str {
        match self {
            Archive::Tar => "tar",
            Archive::Zip => "zip",
            Archive::Ar => "ar",
            Archive::Cpio => "cpio",
        }
    }
}

/// What a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Plain,
    Compressed(Codec),
    Archive(Archive),
    /// A compressed or archive format privy does not decode.
    Unsupported(&'static str),
}

impl Format {
    /// Whether reading this format means decoding (one nesting level).
    pub fn is_nested(self) -> bool {
        !matches!(self, Format::Plain)
    }
}

/// The format of data starting with `head` (at most [`HEAD`] bytes are
/// looked at; fewer when the file is shorter).
pub fn detect(head: &[u8]) -> Format {
    let starts = |m: &[u8]| head.starts_with(m);
    if starts(&[0x1f, 0x8b, 0x08]) {
        return Format::Compressed(Codec::Gzip);
    }
    if starts(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Format::Compressed(Codec::Zstd);
    }
    if starts(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        return Format::Compressed(Codec::Xz);
    }
    // "BZh" + block size '1'..'9' + the block magic (pi) or the
    // end-of-stream magic (sqrt(pi)) of an empty stream.
    if head.len() >= 10
        && starts(b"BZh")
        && (b'1'..=b'9').contains(&head[3])
        && (head[4..10] == [0x31, 0x41, 0x59, 0x26, 0x53, 0x59]
            || head[4..10] == [0x17, 0x72, 0x45, 0x38, 0x50, 0x90])
    {
        return Format::Compressed(Codec::Bzip2);
    }
    // A local file header, or an empty archive (end of central directory).
    if starts(b"PK\x03\x04") || (starts(b"PK\x05\x06") && head.len() >= 22) {
        return Format::Archive(Archive::Zip);
    }
    if starts(b"!<arch>\n") {
        return Format::Archive(Archive::Ar);
    }
    if starts(b"070701") || starts(b"070702") || starts(b"070707") {
        return Format::Archive(Archive::Cpio);
    }
    if looks_like_tar(head) {
        return Format::Archive(Archive::Tar);
    }
    if let Some(name) = unsupported(head) {
        return Format::Unsupported(name);
    }
    Format::Plain
}

fn unsupported(head: &[u8]) -> Option<&'static str> {
    let starts = |m: &[u8]| head.starts_with(m);
    if starts(b"7z\xbc\xaf\x27\x1c") {
        return Some("7z");
    }
    if starts(b"Rar!\x1a\x07") {
        return Some("rar");
    }
    if starts(&[0x04, 0x22, 0x4d, 0x18]) || starts(&[0x02, 0x21, 0x4c, 0x18]) {
        return Some("lz4");
    }
    if starts(b"LZIP") && head.len() >= 5 && head[4] == 1 {
        return Some("lzip");
    }
    // compress (.Z): flags byte has bits 5-6 clear and 9..16 max bits.
    if head.len() >= 3 && starts(&[0x1f, 0x9d]) && head[2] & 0x60 == 0 {
        let bits = head[2] & 0x1f;
        if (9..=16).contains(&bits) {
            return Some("compress (.Z)");
        }
    }
    // rpm lead: magic, then major version 3 or 4.
    if head.len() >= 6 && starts(&[0xed, 0xab, 0xee, 0xdb]) && matches!(head[4], 3 | 4) {
        return Some("rpm");
    }
    if starts(b"MSCF\0\0\0\0") {
        return Some("cab");
    }
    if starts(b"hsqs") && head.len() >= 30 && head[28] == 4 {
        return Some("squashfs");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_numbers_decide_and_plain_text_stays_plain() {
        assert_eq!(detect(b"\x1f\x8b\x08\0"), Format::Compressed(Codec::Gzip));
        assert_eq!(detect(b"BZh91AY&SYxxxx"), Format::Compressed(Codec::Bzip2));
        assert_eq!(detect(b"BZh9 is not bzip2"), Format::Plain);
        assert_eq!(detect(b"PK\x03\x04rest"), Format::Archive(Archive::Zip));
        assert_eq!(
            detect(b"!<arch>\ndebian-binary"),
            Format::Archive(Archive::Ar)
        );
        assert_eq!(
            detect(b"7z\xbc\xaf\x27\x1c\0\x04"),
            Format::Unsupported("7z")
        );
        assert_eq!(
            detect(b"\x1f\x9d\x90xx"),
            Format::Unsupported("compress (.Z)")
        );
        assert_eq!(detect(b"\x1f\x9d\xffxx"), Format::Plain);
        for plain in [&b"#!/bin/sh\n"[..], b"\x7fELF\x02\x01", b"", b"P", b"PK"] {
            assert_eq!(detect(plain), Format::Plain, "{plain:?}");
        }
    }
}
