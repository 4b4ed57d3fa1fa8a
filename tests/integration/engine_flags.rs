//! The per-verb tables of flags that take a value (`engines::*::
//! RUN_VALUE_FLAGS`) against the installed engines' own `--help`: every
//! flag a help text shows with a value is in the table, and every table
//! entry is such a flag in one of the verbs the table serves. So a newer
//! engine's flag, or a typo, fails here instead of making privy misread
//! where the options end (and miss a `--rm` or `-d`).

use crate::util::{self, text};
use std::collections::BTreeSet;
use std::process::Command;

/// The flags of one help text, and those among them that take a value:
/// cobra/pflag (`-a, --attach strings`), urfave/cli (`--config value, -c
/// value`), argp (`-b, --bundle=DIR`).
fn parse_help(help: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut all, mut valued) = (BTreeSet::new(), BTreeSet::new());
    for line in help.lines() {
        let l = line.trim_start();
        if !l.starts_with('-') {
            continue;
        }
        // The flag part ends at the first run of two spaces.
        let head = l.split("  ").next().unwrap_or("");
        let mut names = Vec::new();
        let mut takes = false;
        for part in head.split(", ") {
            let mut words = part.split_whitespace();
            let Some(mut name) = words.next() else {
                continue;
            };
            if let Some((n, _)) = name.split_once('=') {
                name = n;
                takes = true;
            }
            let name = name.split('[').next().unwrap_or(name);
            let ok = name.starts_with('-')
                && name
                    .trim_start_matches('-')
                    .starts_with(|c: char| c.is_ascii_alphabetic());
            if !ok {
                continue;
            }
            names.push(name.to_string());
            if words.next().is_some() {
                takes = true;
            }
        }
        for n in names {
            if takes {
                valued.insert(n.clone());
            }
            all.insert(n);
        }
    }
    (all, valued)
}

/// Check `table` against the `--help` of each of `verbs` (argv lists); a
/// missing engine skips (a failure with PRIVY_E2E_REQUIRED=1).
fn check(table: &[&str], verbs: &[&[&str]]) {
    let program = verbs[0][0];
    if util::which(program).is_none() {
        assert!(
            std::env::var("PRIVY_E2E_REQUIRED").as_deref() != Ok("1"),
            "{program} is not installed but PRIVY_E2E_REQUIRED=1"
        );
        eprintln!("SKIP: {program} is not installed; its flag table not checked");
        return;
    }
    let mut valued = BTreeSet::new();
    let mut all = BTreeSet::new();
    for argv in verbs {
        let o = Command::new(argv[0])
            .args(&argv[1..])
            .arg("--help")
            .output()
            .unwrap();
        let help = format!("{}{}", text(&o.stdout), text(&o.stderr));
        let (a, v) = parse_help(&help);
        assert!(!v.is_empty(), "{argv:?} --help shows no flag: {help}");
        all.extend(a);
        valued.extend(v);
    }
    let table: BTreeSet<String> = table.iter().map(|s| s.to_string()).collect();
    let missing: Vec<_> = valued.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "{program}: flags that take a value, not in the table: {missing:?}"
    );
    let stray: Vec<_> = table.difference(&valued).collect();
    assert!(
        stray.is_empty(),
        "{program}: table entries that are no flag taking a value: {stray:?} (flags seen: {all:?})"
    );
}

#[test]
fn help_parser_reads_every_style() {
    let (all, v) = parse_help(
        "  -a, --attach strings   Attach\n      --rm    Remove\n   --config value, -c value  path\n   --detach, -d   detach\n  -b, --bundle=DIR   bundle\n      --no-pivot   x\n",
    );
    assert_eq!(
        v,
        ["--attach", "-a", "--config", "-c", "--bundle", "-b"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert!(all.contains("--rm") && all.contains("-d") && all.contains("--no-pivot"));
}

#[test]
fn podman_run_and_create_flags_match_the_table() {
    check(
        privy::engines::podman::RUN_VALUE_FLAGS,
        &[&["podman", "run"], &["podman", "create"]],
    );
}

#[test]
fn docker_run_and_create_flags_match_the_table() {
    check(
        privy::engines::docker::RUN_VALUE_FLAGS,
        &[&["docker", "run"], &["docker", "create"]],
    );
}

#[test]
fn ctr_run_flags_match_the_table() {
    check(
        privy::engines::ctr::RUN_VALUE_FLAGS,
        &[&["ctr", "run"], &["ctr", "containers", "create"]],
    );
}

#[test]
fn runc_and_crun_run_and_create_flags_match_the_table() {
    // One table serves every runtime: each installed one's flags are in
    // it, and what no installed runtime has is reported as stray only
    // when both are here.
    let t = privy::engines::runtime::RUN_VALUE_FLAGS;
    if util::which("runc").is_some() && util::which("crun").is_some() {
        check(
            t,
            &[
                &["runc", "run"],
                &["runc", "create"],
                &["crun", "run"],
                &["crun", "create"],
            ],
        );
    } else {
        check(t, &[&["runc", "run"], &["runc", "create"]]);
    }
}
