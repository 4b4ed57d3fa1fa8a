//! Untrusted names made safe to print.
//!
//! Names that privy prints come from places it does not control: entries of
//! an image's tar layers, paths a plugin returned, annotation values, file
//! names in a host directory. Printed raw, a name such as
//! `"a\nimage.tar: clean (0 leaks)\x1b[2K\r"` forges lines of privy's own
//! output, and a bidi override (U+202E) makes a terminal show a name
//! reversed. Every name privy prints goes through [`escaped`] (in listings)
//! or [`shown`] (quoted and cut short, in error lines); free text a plugin
//! or a server wrote goes through [`one_line`].
//!
//! What is escaped: C0 and C1 control characters and DEL, the Unicode
//! bidi controls (U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to
//! U+2069), the line and paragraph separators (U+2028, U+2029) and the
//! byte-order mark. Each becomes a Rust-style escape (`\n`, `\t`, `\u{202e}`),
//! and a backslash becomes `\\` so an escape can never be forged either.
//! Everything else, other scripts included, prints as it is.

use std::borrow::Cow;

/// How many characters [`shown`] keeps of a long name.
pub const SHOWN_CHARS: usize = 80;

/// Whether `c` must not reach a terminal or a log line raw.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{feff}'
        )
}

fn push_escape(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\0' => out.push_str("\\0"),
        '\\' => out.push_str("\\\\"),
        c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
    }
}

/// `s` with every unsafe character (and `\`) escaped; borrowed when there
/// is nothing to escape, which is the common case.
pub fn escaped(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c == '\\' || is_unsafe(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c == '\\' || is_unsafe(c) {
            push_escape(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Bytes that should be a name (a tar entry, a file name): valid UTF-8 is
/// [`escaped`]; any other byte shows as `\xNN`.
pub fn escaped_bytes(b: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => escaped(s),
        Err(_) => {
            let mut out = String::with_capacity(b.len() + 8);
            for chunk in b.utf8_chunks() {
                out.push_str(&escaped(chunk.valid()));
                for byte in chunk.invalid() {
                    out.push_str(&format!("\\x{byte:02x}"));
                }
            }
            Cow::Owned(out)
        }
    }
}

/// A short, quoted, escaped rendering of an untrusted name for an error
/// line: at most [`SHOWN_CHARS`] characters of it, then `…`.
pub fn shown(s: &str) -> String {
    let cut: String = s.chars().take(SHOWN_CHARS).collect();
    let more = if s.chars().count() > SHOWN_CHARS {
        "…"
    } else {
        ""
    };
    format!("\"{}{more}\"", escaped(&cut).replace('"', "\\\""))
}

/// Printable, single-line, at most `max` characters (then `…`): for free
/// text a plugin or a server wrote (a log line, an error message), where
/// every control character, line breaks included, becomes a space.
pub fn one_line(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_borrowed_untouched() {
        for s in ["entitlement/cert.pem", "ünïcödé/名前.txt", "a b"] {
            assert!(matches!(escaped(s), Cow::Borrowed(_)), "{s}");
        }
    }

    #[test]
    fn forged_lines_terminal_escapes_and_bidi_overrides_are_escaped() {
        let hostile = "a\nimage.tar: clean (0 leaks)\x1b[2K\r\u{202e}gpj.exe\u{85}\u{7f}";
        let e = escaped(hostile);
        assert!(!e.chars().any(is_unsafe), "{e}");
        assert_eq!(
            e,
            "a\\nimage.tar: clean (0 leaks)\\u{1b}[2K\\r\\u{202e}gpj.exe\\u{85}\\u{7f}"
        );
    }

    #[test]
    fn a_backslash_cannot_forge_an_escape() {
        assert_eq!(escaped("a\\nb"), "a\\\\nb");
    }

    #[test]
    fn invalid_utf8_shows_as_hex_bytes() {
        assert_eq!(escaped_bytes(b"ok\xff\n"), "ok\\xff\\n");
    }

    #[test]
    fn shown_quotes_and_cuts() {
        let s = shown(&format!("x\"{}", "y".repeat(200)));
        assert!(s.starts_with("\"x\\\"y") && s.ends_with("…\""), "{s}");
        assert!(s.chars().count() < 90, "{s}");
    }
}
