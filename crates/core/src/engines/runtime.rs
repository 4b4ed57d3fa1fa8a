//! OCI runtimes (runc, crun, youki, runsc): their command line, which
//! `privy shim` stands in for, and their quirks privy works around.
//!
//! - `RUNTIME [global flags] create|run [--bundle DIR] ID`: the bundle
//!   defaults to the working directory. Docker and containerd call the
//!   runtime this way; `privy shim` adds privy's hooks to that bundle's
//!   `config.json` on `create` and `run`, and passes every other verb on.
//! - `RUNTIME run` without `-d` runs the container in the foreground and
//!   deletes it when it exits.
//! - A failed hook's stderr: runc shows it; crun sends it to /dev/null.
//!   Under podman, crun's own errors go to the file its `--log` names (in
//!   JSON with `--log-format json`), and podman shows what that file says.
//!   So the hook's one line must also go there ([`log_destination`]).

use super::argv::{self, DoubleDash};
use std::path::PathBuf;

/// runc's global flags that take a value (crun takes the same).
pub const GLOBAL_VALUE_FLAGS: &[&str] =
    &["--root", "--log", "--log-format", "--criu", "--rootless"];

/// Flags of a runtime's `run` and `create` that take a value: runc's and
/// crun's `run --help` and `create --help` on this machine (a test parses
/// the installed runtimes' help, so the table cannot drift).
pub const RUN_VALUE_FLAGS: &[&str] = &[
    "-b",
    "--bundle",
    "--config",
    "--console-socket",
    "-f",
    "--pid-file",
    "--preserve-fds",
];

/// runc's global flags that take no value, which Docker and containerd
/// may put first (`--systemd-cgroup`, `--debug`).
const GLOBAL_BOOL_FLAGS: &[&str] = &["--systemd-cgroup", "--debug"];

/// The verbs of the OCI runtime command line (runc's), except `run`, which
/// is privy's own command: engines call `run` only after a global flag
/// (`--root`), which says "runtime" first.
const VERBS: &[&str] = &[
    "create",
    "start",
    "state",
    "kill",
    "delete",
    "exec",
    "ps",
    "pause",
    "resume",
    "update",
    "events",
    "features",
    "checkpoint",
    "restore",
    "list",
    "spec",
];

/// Whether `args` (program first) is an OCI runtime call rather than a
/// privy command: its first argument is one of runc's global flags
/// (`--root`, `--log`, `--log-format`, `--systemd-cgroup`, ...; privy has
/// none of them) or a runtime verb privy has no command for. Docker and
/// containerd always pass `--root` first, so `dockerd --add-runtime
/// privy=/usr/local/bin/privy` needs no `runtimeArgs`.
pub fn called_as_runtime(args: &[std::ffi::OsString]) -> bool {
    let Some(first) = args.get(1).and_then(|a| a.to_str()) else {
        return false;
    };
    let flag = first.split_once('=').map_or(first, |(f, _)| f);
    GLOBAL_VALUE_FLAGS.contains(&flag)
        || GLOBAL_BOOL_FLAGS.contains(&flag)
        || VERBS.contains(&first)
}

/// The runtime `privy shim` runs when none is named.
pub const DEFAULT_RUNTIME: &str = "runc";

/// The verb of a runtime call and, for `create`/`run`, the bundle
/// directory (`--bundle DIR`, `-b DIR`, `--bundle=DIR`, `-b=DIR`; default
/// `.`). `None` without a verb (`--version`).
pub fn parse_call(args: &[String]) -> Option<(String, Option<PathBuf>)> {
    let i = argv::verb_index(args, 0, GLOBAL_VALUE_FLAGS, DoubleDash::EndsFlags)?;
    let verb = args[i].clone();
    if verb != "create" && verb != "run" {
        return Some((verb, None));
    }
    let rest = &args[i + 1..];
    let mut bundle = None;
    let mut j = 0;
    while j < rest.len() {
        let a = rest[j].as_str();
        if a == "--bundle" || a == "-b" {
            bundle = rest.get(j + 1).map(PathBuf::from);
            j += 2;
            continue;
        }
        if let Some(v) = a
            .strip_prefix("--bundle=")
            .or_else(|| a.strip_prefix("-b="))
        {
            bundle = Some(PathBuf::from(v));
        }
        j += 1;
    }
    // The OCI runtime CLI defaults the bundle to the working directory.
    Some((verb, Some(bundle.unwrap_or_else(|| PathBuf::from(".")))))
}

/// Whether `cmd` is a runtime's foreground `run` (the container is deleted
/// when it exits).
pub fn is_foreground_run(cmd: &super::Command) -> bool {
    cmd.engine.is_some_and(|e| e.is_runtime())
        && cmd.verb() == Some("run")
        && !cmd.has_flag(&["-d", "--detach"])
}

/// Where a runtime writes its own log, from its command line: `--log FILE`
/// (or `--log=FILE`), and whether `--log-format` is `json`.
pub fn log_destination(args: &[&str]) -> Option<(PathBuf, bool)> {
    let mut log = None;
    let mut json = false;
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        if a == "--log" {
            log = args.get(i + 1).map(PathBuf::from);
            i += 1;
        } else if let Some(v) = a.strip_prefix("--log=") {
            log = Some(PathBuf::from(v));
        } else if a == "--log-format" {
            json = args.get(i + 1) == Some(&"json");
            i += 1;
        } else if a == "--log-format=json" {
            json = true;
        }
        i += 1;
    }
    Some((log?, json))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engines::Command;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn docker_style_global_flags_come_before_the_verb() {
        let (verb, b) = parse_call(&v(
            "--root /var/run/docker/runtime-runc/moby --log /x/log.json --log-format json --systemd-cgroup create --bundle /b/1 --pid-file /p id1",
        ))
        .unwrap();
        assert_eq!(
            (verb.as_str(), b.unwrap().to_str().unwrap()),
            ("create", "/b/1")
        );
        let (_, b) = parse_call(&v("create -b=/b/2 id")).unwrap();
        assert_eq!(b.unwrap().to_str().unwrap(), "/b/2");
        let (_, b) = parse_call(&v("run id")).unwrap();
        assert_eq!(b.unwrap().to_str().unwrap(), ".");
        assert_eq!(
            parse_call(&v("--root /r start id")).unwrap(),
            ("start".into(), None)
        );
        assert_eq!(parse_call(&v("--version")), None);
    }

    #[test]
    fn a_foreground_run_is_one_without_detach() {
        assert!(is_foreground_run(&Command::parse(&v(
            "runc --root /x run -b b c1"
        ))));
        assert!(!is_foreground_run(&Command::parse(&v(
            "runc run -d -b b c1"
        ))));
        assert!(!is_foreground_run(&Command::parse(&v("runc create c1"))));
        assert!(!is_foreground_run(&Command::parse(&v("podman run img"))));
    }

    #[test]
    fn the_runtime_log_and_its_format_come_from_its_arguments() {
        assert_eq!(
            log_destination(&["crun", "--log", "/l", "--log-format=json", "create"]),
            Some((PathBuf::from("/l"), true))
        );
        assert_eq!(
            log_destination(&["crun", "--log=/l", "create"]),
            Some((PathBuf::from("/l"), false))
        );
        assert_eq!(log_destination(&["runc", "create"]), None);
    }
}
