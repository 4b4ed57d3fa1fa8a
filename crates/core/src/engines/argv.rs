//! The one reader of engine command lines: where the verb is, what a flag's
//! values are, whether a flag is there. Each engine brings its own table of
//! global flags that take a value (in its own file); this file knows only
//! the shapes every one of these CLIs shares: `--flag value`,
//! `--flag=value`, and for short flags `-f value`, `-fvalue`, `-f=value`.

/// What a bare `--` before the verb means to an engine's CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoubleDash {
    /// cobra (podman, docker, nerdctl, buildah): flags end and no
    /// subcommand can follow, so there is no verb.
    EndsCommand,
    /// urfave/cli and argp (runc, crun): global flags end and the verb
    /// follows; the scan passes over it and goes on looking.
    EndsFlags,
}

/// Index of the first positional argument at or after `start`, skipping
/// flags (and the values of those in `value_flags`): an engine's verb.
pub fn verb_index(
    args: &[String],
    start: usize,
    value_flags: &[&str],
    dashes: DoubleDash,
) -> Option<usize> {
    let mut i = start;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            match dashes {
                DoubleDash::EndsCommand => return None,
                DoubleDash::EndsFlags => {
                    i += 1;
                    continue;
                }
            }
        }
        if a.starts_with('-') {
            if !a.contains('=') && value_flags.contains(&a.as_str()) {
                i += 1;
            }
            i += 1;
            continue;
        }
        return Some(i);
    }
    None
}

/// The options that lead `args` (the arguments after a verb), up to the
/// first positional argument (the image) or a bare `--`, read with the
/// verb's table of flags that take a value: `--name x --rm img` leads with
/// all three options, `img --rm` with none.
pub fn leading_options<'a>(args: &'a [String], value_flags: &[&str]) -> &'a [String] {
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" || !a.starts_with('-') || a == "-" {
            break;
        }
        if !a.contains('=') && takes_value(a, value_flags) {
            i += 1;
        }
        i += 1;
    }
    &args[..i.min(args.len())]
}

/// Whether the option `a` (no `=value`) takes its value from the next
/// argument: it is in `value_flags`, or it is a run of short flags
/// (`-it`, `-dp`) whose last one is.
fn takes_value(a: &str, value_flags: &[&str]) -> bool {
    if value_flags.contains(&a) {
        return true;
    }
    match a.strip_prefix('-') {
        Some(shorts) if !shorts.starts_with('-') && shorts.len() > 1 => {
            // `-p8080` carries its value; `-dp 8080` does not. pflag reads
            // a short value flag's value from the rest of the word, so
            // only a value flag at the very end takes the next argument.
            let mut chars = shorts.char_indices();
            for (i, c) in chars.by_ref() {
                let flag = format!("-{c}");
                if value_flags.contains(&flag.as_str()) {
                    return i + c.len_utf8() == shorts.len();
                }
            }
            false
        }
        _ => false,
    }
}

/// Whether one of `names` (a flag, or `flag=value`) is among `opts` (the
/// [`leading_options`] of a verb's arguments, read with the same
/// `value_flags`: a flag's value is never taken for a flag). A flag the
/// table misses is only ever a safe miss: the ticket then lives until the
/// daemon's sweep instead of being dropped at once.
pub fn has_flag(opts: &[String], value_flags: &[&str], names: &[&str]) -> bool {
    let mut i = 0;
    while i < opts.len() {
        let a = &opts[i];
        let hit = names
            .iter()
            .any(|n| a == n || a.starts_with(&format!("{n}=")) || in_short_run(a, n));
        if hit {
            return true;
        }
        if !a.contains('=') && takes_value(a, value_flags) {
            i += 1;
        }
        i += 1;
    }
    false
}

/// Whether the short flag `n` (`-d`) is in a run of short flags (`-dit`).
fn in_short_run(a: &str, n: &str) -> bool {
    let (Some(run), Some(flag)) = (a.strip_prefix('-'), n.strip_prefix('-')) else {
        return false;
    };
    !run.starts_with('-')
        && flag.len() == 1
        && !run.contains('=')
        && run.len() > 1
        && run.contains(flag)
}

/// Every value of a flag that takes one (`--f V`, `--f=V`, and for a short
/// flag `-t V`, `-tV`, `-t=V`), up to a bare `--`.
pub fn flag_values(args: &[String], long: &str, short: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            break;
        }
        let names = std::iter::once(long).chain(short);
        for n in names {
            if a == n {
                if let Some(v) = args.get(i + 1) {
                    out.push(v.clone());
                    i += 1;
                }
            } else if let Some(v) = a.strip_prefix(n) {
                if let Some(v) = v.strip_prefix('=') {
                    out.push(v.to_owned());
                } else if !n.starts_with("--") && !v.is_empty() {
                    out.push(v.to_owned());
                }
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn the_verb_comes_after_global_flags_and_their_values() {
        let t = ["--root", "-c"];
        let a = v("x --root /r -c ctx --debug --log=x run img");
        assert_eq!(verb_index(&a, 1, &t, DoubleDash::EndsCommand), Some(7));
        assert_eq!(
            verb_index(&v("x --root=/r run"), 1, &t, DoubleDash::EndsCommand),
            Some(2)
        );
        assert_eq!(
            verb_index(&v("x -- run"), 1, &t, DoubleDash::EndsCommand),
            None
        );
        assert_eq!(
            verb_index(&v("x --root /r -- create id"), 1, &t, DoubleDash::EndsFlags),
            Some(4)
        );
        assert_eq!(
            verb_index(&v("x --debug"), 1, &t, DoubleDash::EndsFlags),
            None
        );
    }

    #[test]
    fn flags_are_seen_only_among_the_leading_options() {
        let t = ["--name", "-p"];
        let lead = |s: &str| leading_options(&v(s), &t).to_vec();
        let has_flag = |o: &[String], n: &[&str]| has_flag(o, &t, n);
        assert!(has_flag(&lead("--rm -it img"), &["--rm"]));
        assert!(has_flag(&lead("-d=true img"), &["-d", "--detach"]));
        assert!(!has_flag(&lead("img --rm"), &["--rm"]));
        // With the verb's table, a flag after another's value is seen.
        assert!(has_flag(&lead("--name x --rm img"), &["--rm"]));
        assert!(has_flag(&lead("-p 80:80 -d img"), &["-d", "--detach"]));
        assert!(has_flag(&lead("-dit img"), &["-d"]));
        assert!(!has_flag(&lead("-p8080 img -d"), &["-d"]));
        assert!(has_flag(&lead("-tp 80 --rm img"), &["--rm"]));
        assert!(!has_flag(&lead("--name --rm img"), &["--rm"]));
        assert!(!has_flag(&lead("-- --rm"), &["--rm"]));
        assert_eq!(lead("--name x img --rm"), v("--name x"));
    }

    #[test]
    fn flag_values_in_every_spelling_up_to_a_double_dash() {
        let a = v("-t a:1 --tag=b --tag c -td --no-cache ctx -- -t e");
        assert_eq!(flag_values(&a, "--tag", Some("-t")), ["a:1", "b", "c", "d"]);
        assert_eq!(flag_values(&v("-t=x"), "--tag", Some("-t")), ["x"]);
        assert!(flag_values(&v("--tagged x"), "--tag", None).is_empty());
    }
}
