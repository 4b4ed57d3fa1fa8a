//! The two simple archive formats found in images besides tar and zip:
//! `ar` (every `.deb`: `control.tar.xz` and `data.tar.xz` inside, so the
//! compressed members must be decoded to be read) and cpio (initramfs
//! images, rpm payloads). Both store members as they are; members are
//! handed out one by one as readers, streaming. Damage is an error.

use super::decode::Input;
use crate::shown::escaped_bytes;
use std::io::{self, Read};

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn exact(input: &mut Input, n: usize, what: &str) -> io::Result<Vec<u8>> {
    let mut v = vec![0u8; n];
    input.read_exact_buf(&mut v).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            bad(format!("input ends inside {what}"))
        } else {
            e
        }
    })?;
    Ok(v)
}

fn number(field: &[u8], radix: u32, what: &str) -> io::Result<u64> {
    let s = std::str::from_utf8(field)
        .ok()
        .map(|s| s.trim_matches(|c: char| c == ' ' || c == '\0'))
        .ok_or_else(|| bad(format!("bad {what} field")))?;
    if s.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(s, radix)
        .map_err(|_| bad(format!("bad {what} field {:?}", escaped_bytes(field))))
}

/// A member's bytes, exactly `left` of them.
fn member_data<'i, 'a>(input: &'i mut Input<'a>, len: u64) -> io::Take<&'i mut Input<'a>> {
    input.take(len)
}

/// Drain what a visitor did not read, and check the member was whole.
fn finish(r: &mut io::Take<&mut Input>, name: &str) -> io::Result<()> {
    io::copy(r, &mut io::sink())?;
    if r.limit() > 0 {
        return Err(bad(format!("input ends inside the data of {name}")));
    }
    Ok(())
}

/// Walk an `ar` archive (`!<arch>\n` already detected, not consumed);
/// returns each member's `[start, end)`.
pub fn walk_ar(
    input: &mut Input,
    visit: &mut dyn FnMut(&str, &mut dyn Read) -> io::Result<()>,
) -> io::Result<Vec<(u64, u64)>> {
    exact(input, 8, "the ar magic")?;
    let mut ranges = Vec::new();
    let mut long_names: Vec<u8> = Vec::new();
    loop {
        if input.fill(1)?.is_empty() {
            return Ok(ranges);
        }
        let h = exact(input, 60, "an ar header")?;
        if &h[58..60] != b"`\n" {
            return Err(bad(format!(
                "ar: bad header at byte {}",
                input.offset() - 60
            )));
        }
        let mut size = number(&h[48..58], 10, "ar size")?;
        let raw_name = &h[..16];
        let trimmed: &[u8] = {
            let end = raw_name
                .iter()
                .rposition(|&c| c != b' ')
                .map_or(0, |i| i + 1);
            &raw_name[..end]
        };
        let name: Vec<u8> = if trimmed == b"//" {
            // GNU long-name table: names end with "/\n".
            if size > 1 << 20 {
                return Err(bad("ar: long-name table over 1 MiB".into()));
            }
            long_names = exact(input, size as usize, "the ar name table")?;
            if size % 2 == 1 {
                exact(input, 1, "ar padding")?;
            }
            continue;
        } else if let Some(n) = trimmed.strip_prefix(b"#1/") {
            // BSD: the name is the first N bytes of the data.
            let n = number(n, 10, "ar name length")?;
            if n > size || n > 4096 {
                return Err(bad("ar: bad BSD name length".into()));
            }
            size -= n;
            let v = exact(input, n as usize, "an ar name")?;
            v.into_iter().take_while(|&c| c != 0).collect()
        } else if trimmed.len() > 1
            && trimmed[0] == b'/'
            && trimmed[1..].iter().all(u8::is_ascii_digit)
        {
            let off = number(&trimmed[1..], 10, "ar name offset")? as usize;
            let rest = long_names.get(off..).unwrap_or_default();
            let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            rest[..end]
                .strip_suffix(b"/")
                .unwrap_or(&rest[..end])
                .to_vec()
        } else {
            trimmed.strip_suffix(b"/").unwrap_or(trimmed).to_vec()
        };
        let name = if name.is_empty() {
            "/".to_string() // the symbol table
        } else {
            escaped_bytes(&name).into_owned()
        };
        let start = input.offset();
        let mut r = member_data(input, size);
        visit(&name, &mut r)?;
        finish(&mut r, &name)?;
        ranges.push((start, start + size));
        if size % 2 == 1 && !input.fill(1)?.is_empty() {
            input.skip(1)?;
        }
    }
}

/// Walk a cpio archive (newc, crc or odc ASCII headers); returns each
/// member's `[start, end)`.
pub fn walk_cpio(
    input: &mut Input,
    visit: &mut dyn FnMut(&str, &mut dyn Read) -> io::Result<()>,
) -> io::Result<Vec<(u64, u64)>> {
    let mut ranges = Vec::new();
    loop {
        let at = input.offset();
        let magic = exact(input, 6, "a cpio header")?;
        let (namesize, size, align) = match &magic[..] {
            b"070701" | b"070702" => {
                let h = exact(input, 104, "a cpio header")?;
                // Fields after the magic, 8 hex digits each: ino mode uid
                // gid nlink mtime filesize devmajor devminor rdevmajor
                // rdevminor namesize check.
                let f = |k: usize| number(&h[k * 8..k * 8 + 8], 16, "cpio");
                (f(11)?, f(6)?, 4u64)
            }
            b"070707" => {
                let h = exact(input, 70, "a cpio header")?;
                (
                    number(&h[53..59], 8, "cpio name size")?,
                    number(&h[59..70], 8, "cpio file size")?,
                    1u64,
                )
            }
            _ => return Err(bad(format!("cpio: bad header at byte {at}"))),
        };
        if namesize == 0 || namesize > 4096 {
            return Err(bad(format!("cpio: bad name size at byte {at}")));
        }
        let name = exact(input, namesize as usize, "a cpio name")?;
        let name = &name[..name.iter().position(|&c| c == 0).unwrap_or(name.len())];
        let pad = |n: u64| (align - n % align) % align;
        input.skip(pad(input.offset() - at))?;
        if name == b"TRAILER!!!" {
            return Ok(ranges);
        }
        let name = escaped_bytes(name).into_owned();
        let start = input.offset();
        let mut r = member_data(input, size);
        visit(&name, &mut r)?;
        finish(&mut r, &name)?;
        ranges.push((start, start + size));
        input.skip(pad(size))?;
    }
}
