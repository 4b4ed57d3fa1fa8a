//! Issue 15's expiry: a source tells the host when its files expire
//! (`privy:source/expiry`). Against the real plugin host: the earliest of
//! a source's statements counts, the host clamps what it is told, a
//! component that predates the interface (built from a frozen copy of the
//! contract, `plugins/old-source`) still loads and runs, and components
//! that do not call it do not import it; through `privy plugin run`, what
//! an operator sees. The served record and `privy refresh` are tested in
//! `rotation`, the vault source's expiries against OpenBao in `vault`.

use crate::util::{self, privy_with_stdin, text};
use privy::config::{Grant, Limits};
use privy::plugin::{Output, PluginError};
use std::collections::BTreeMap;

use privy::sys::unix_now as now;

/// The hostile fixture in its `expires` mode: one `expires-at` call per
/// item of `at`, then one `expires-in` per item of `in_`.
fn expiring(at: &str, in_: &str) -> Result<Output, PluginError> {
    let config: BTreeMap<String, String> =
        [("mode", "expires"), ("expires_at", at), ("expires_in", in_)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    util::call_plugin_output(
        util::plugin_host(),
        util::hostile(),
        "hostile",
        &Grant::default(),
        &config,
        &Limits::default(),
    )
}

/// `e` is `secs` after a moment between `from` and now.
fn assert_after(e: Option<u64>, from: u64, secs: u64) {
    let e = e.expect("an expiry");
    assert!(
        (from + secs..=now() + secs).contains(&e),
        "{e} is not {secs} s after {from}"
    );
}

#[test]
fn the_earliest_of_a_sources_expiries_counts() {
    let t = now();
    let out = expiring(&(t + 7200).to_string(), "3600,60,86400").unwrap();
    assert_eq!(out.files.len(), 3, "the files come as ever");
    assert_after(out.expires, t, 60);
    let out = expiring(&format!("{},{}", t + 5000, t + 4000), "").unwrap();
    assert_eq!(out.expires, Some(t + 4000));
}

#[test]
fn a_source_that_says_nothing_has_no_expiry() {
    assert_eq!(expiring("", "").unwrap().expires, None);
    let config = BTreeMap::from([("mode".to_string(), "ok".to_string())]);
    let out = util::call_plugin_output(
        util::plugin_host(),
        util::hostile(),
        "hostile",
        &Grant::default(),
        &config,
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(out.expires, None);
}

#[test]
fn an_expiry_in_the_past_counts_as_now_and_one_beyond_a_year_is_ignored() {
    let t = now();
    // Past: fetch again at once.
    assert_after(expiring("5", "").unwrap().expires, t, 0);
    assert_after(expiring("", "0").unwrap().expires, t, 0);
    // More than a year ahead, in milliseconds by mistake, or the largest
    // value there is (no overflow): ignored.
    let year = 365 * 86_400;
    for (at, in_) in [
        ("", (year + 1).to_string()),
        ((t * 1000).to_string().as_str(), String::new()),
        ("", u64::MAX.to_string()),
        (u64::MAX.to_string().as_str(), String::new()),
    ] {
        assert_eq!(expiring(at, &in_).unwrap().expires, None, "{at} {in_}");
    }
    // Exactly a year is kept; an ignored value leaves the valid ones.
    assert_after(expiring("", &year.to_string()).unwrap().expires, t, year);
    let far = (t + 2 * year).to_string();
    assert_after(expiring(&far, "90").unwrap().expires, t, 90);
}

#[test]
fn a_component_built_before_the_expiry_interface_still_loads_and_runs() {
    // Generated from the contract as released before `expiry`.
    let old = util::plugin_host()
        .load_bytes(&std::fs::read(util::guest("old_source")).unwrap())
        .unwrap();
    assert!(
        old.imports().iter().any(|i| i == "privy:source/host@0.1.0"),
        "{:?}",
        old.imports()
    );
    assert!(!old.imports().iter().any(|i| i.contains("expiry")));
    let config = BTreeMap::from([("greeting".to_string(), "hi".to_string())]);
    let out = util::call_plugin_output(
        util::plugin_host(),
        &old,
        "old",
        &Grant::default(),
        &config,
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(out.files.len(), 1);
    assert_eq!(
        (out.files[0].path.as_str(), out.files[0].data.expose()),
        ("old/hello", &b"hi"[..])
    );
    assert_eq!(out.expires, None);
    // Built from today's contract, a plugin imports `expiry` only if it
    // calls it: the shipped host-dir and upload do not; vault does.
    for (stem, imports) in [
        ("host_dir", false),
        ("upload", false),
        ("creds", false),
        ("vault", true),
        ("hostile", true),
    ] {
        let p = util::plugin_host()
            .load_bytes(&std::fs::read(util::guest(stem)).unwrap())
            .unwrap();
        assert_eq!(
            p.imports().iter().any(|i| i == "privy:source/expiry@0.1.0"),
            imports,
            "{stem}: {:?}",
            p.imports()
        );
    }
}

#[test]
fn plugin_run_shows_when_the_files_expire_and_names_an_ignored_expiry_once() {
    let wasm = util::guest("hostile");
    let far = (now() + 400 * 86_400).to_string();
    let many_far = [far.as_str(); 20].join(",");
    let base = [
        "plugin",
        "run",
        wasm.to_str().unwrap(),
        "-c",
        "mode=expires",
        "-c",
        "expires_in=120",
    ];
    let at = format!("expires_at={many_far}");
    let t = now();
    let out = privy_with_stdin(&[&base[..], &["-c", &at]].concat(), b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    let line = o
        .lines()
        .find(|l| l.trim_start().starts_with("expires "))
        .unwrap_or_else(|| panic!("no expiry shown: {o}"));
    let unix: u64 = line
        .split("unix ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert_after(Some(unix), t, 120);
    assert!(
        line.contains(&privy::logging::rfc3339_seconds(unix)),
        "{line}"
    );
    let e = text(&out.stderr);
    assert_eq!(
        e.matches("an expiry more than a year ahead is ignored")
            .count(),
        1,
        "{e}"
    );
    // JSON.
    let out = privy_with_stdin(&[&base[..], &["--json"]].concat(), b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_after(v["expires"]["unix"].as_u64(), t, 120);
    assert!(v["expires"]["utc"].as_str().unwrap().ends_with('Z'), "{v}");
    // A source that says nothing: nothing shown.
    let out = privy_with_stdin(
        &["plugin", "run", wasm.to_str().unwrap(), "-c", "mode=ok"],
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains("expires"),
        "{}",
        text(&out.stdout)
    );
}
