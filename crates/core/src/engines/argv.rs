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

/// Whether one of `names` (a flag, or `flag=value`) is among the options
/// that lead `opts`, before its first positional argument. Options that
/// take a separate value end that leading run (`run --name x --rm img`
/// sees no `--rm`); only ever a safe miss: the ticket then lives until
/// the daemon's sweep instead of being dropped at once.
pub fn has_flag(opts: &[String], names: &[&str]) -> bool {
    opts.iter().take_while(|a| a.starts_with('-')).any(|a| {
        names
            .iter()
            .any(|n| a == n || a.starts_with(&format!("{n}=")))
    })
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
    fn flags_are_seen_only_in_the_leading_run_of_options() {
        assert!(has_flag(&v("--rm -it img"), &["--rm"]));
        assert!(has_flag(&v("-d=true img"), &["-d", "--detach"]));
        assert!(!has_flag(&v("img --rm"), &["--rm"]));
        assert!(!has_flag(&v("--name x --rm img"), &["--rm"]));
    }

    #[test]
    fn flag_values_in_every_spelling_up_to_a_double_dash() {
        let a = v("-t a:1 --tag=b --tag c -td --no-cache ctx -- -t e");
        assert_eq!(flag_values(&a, "--tag", Some("-t")), ["a:1", "b", "c", "d"]);
        assert_eq!(flag_values(&v("-t=x"), "--tag", Some("-t")), ["x"]);
        assert!(flag_values(&v("--tagged x"), "--tag", None).is_empty());
    }
}
