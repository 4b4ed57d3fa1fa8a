//! Durations as an operator writes them in `privy.toml`: `30s`, `5m`,
//! `1h30m`, `1d`. One or more groups of decimal digits and a unit (`s`,
//! `m`, `h`, `d`), largest unit first, each unit at most once; nothing
//! else (no spaces, fractions or bare numbers: `refresh = "5"` could mean
//! seconds or minutes, so it is refused). [`format()`] writes the canonical
//! form back (`90s` reads as `1m30s`), which is what `privy config check`
//! shows.

use std::time::Duration;

const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

/// Parse `text`; the error says what is wrong with it, without repeating it.
pub fn parse(text: &str) -> Result<Duration, String> {
    const SHAPE: &str =
        "write it as digits and a unit, largest first, like \"30s\", \"5m\", \"1h30m\" or \"1d\"";
    if text.is_empty() {
        return Err(format!("is empty; {SHAPE}"));
    }
    let mut secs: u64 = 0;
    let mut next_unit = 0; // index into UNITS: units must come largest first
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let Some(at) = UNITS.iter().position(|(u, _)| *u == c) else {
            return Err(format!("has {:?}, which is not a unit; {SHAPE}", c));
        };
        if digits.is_empty() {
            return Err(format!(
                "has a unit {c:?} without a number before it; {SHAPE}"
            ));
        }
        if at < next_unit {
            return Err(format!("repeats or misorders its units; {SHAPE}"));
        }
        let n: u64 = digits.parse().map_err(|_| "is too long".to_string())?;
        secs = n
            .checked_mul(UNITS[at].1)
            .and_then(|s| secs.checked_add(s))
            .ok_or_else(|| "is too long".to_string())?;
        digits.clear();
        next_unit = at + 1;
    }
    if !digits.is_empty() {
        return Err(format!("ends in a number without a unit; {SHAPE}"));
    }
    Ok(Duration::from_secs(secs))
}

/// The canonical text of `d` (whole seconds): `1h30m`, `2s`, `0s`.
pub fn format(d: Duration) -> String {
    let mut left = d.as_secs();
    if left == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (u, secs) in UNITS {
        if left >= secs {
            out.push_str(&format!("{}{u}", left / secs));
            left %= secs;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit_and_combination() {
        for (text, secs) in [
            ("1s", 1),
            ("30s", 30),
            ("5m", 300),
            ("1h30m", 5_400),
            ("2d", 172_800),
            ("1d2h3m4s", 93_784),
            ("90s", 90),
            ("0s", 0),
        ] {
            assert_eq!(parse(text), Ok(Duration::from_secs(secs)), "{text}");
        }
    }

    #[test]
    fn bad_durations_say_why_in_one_line() {
        for (text, why) in [
            ("", "is empty"),
            ("5", "without a unit"),
            ("5 m", "not a unit"),
            ("1.5h", "not a unit"),
            ("5ms", "without a number"),
            ("m", "without a number"),
            ("1m1h", "misorders"),
            ("1s1s", "misorders"),
            ("-1s", "not a unit"),
            ("99999999999999999999s", "too long"),
            ("999999999999999999d", "too long"),
        ] {
            let e = parse(text).expect_err(text);
            assert!(e.contains(why) && !e.contains('\n'), "{text:?}: {e}");
        }
    }

    #[test]
    fn format_is_canonical_and_reads_back() {
        for (secs, text) in [(90, "1m30s"), (300, "5m"), (93_784, "1d2h3m4s"), (1, "1s")] {
            let d = Duration::from_secs(secs);
            assert_eq!(format(d), text);
            assert_eq!(parse(text), Ok(d));
        }
    }
}
