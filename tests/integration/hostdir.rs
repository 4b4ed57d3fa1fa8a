//! The shipped `host-dir` source against real directories.

use privy::config::{Grant, Limits};
use privy::plan::PluginRef;
use privy::plugin::{Plugin, PluginError, RawFile};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::OnceLock;

use crate::util;

use util::plugin_host as host;

fn component() -> &'static Plugin {
    static C: OnceLock<Plugin> = OnceLock::new();
    C.get_or_init(|| {
        host()
            .load(&PluginRef::Embedded("host-dir".into()))
            .unwrap()
    })
}

fn fetch(dir: &Path, grant_dir: &Path) -> Result<Vec<RawFile>, PluginError> {
    let grant = Grant {
        dirs: vec![grant_dir.to_owned()],
        ..Grant::default()
    };
    let config: BTreeMap<String, String> = [("dir".to_string(), dir.display().to_string())].into();
    util::call_plugin(
        host(),
        component(),
        "host-dir",
        &grant,
        &config,
        &Limits::default(),
    )
}

fn write(p: &Path, data: &[u8], mode: u32) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn returns_every_regular_file_recursively_with_clean_modes() {
    let d = tempfile::tempdir().unwrap();
    write(&d.path().join("entitlement/cert.pem"), b"CERT", 0o644);
    write(&d.path().join("entitlement/key.pem"), b"KEY", 0o600);
    write(&d.path().join("tool"), b"#!", 0o4755);
    std::os::unix::fs::symlink("entitlement/cert.pem", d.path().join("alias.pem")).unwrap();
    let files = fetch(d.path(), d.path()).unwrap();
    let got: Vec<(String, Vec<u8>, Option<u32>)> = files
        .iter()
        .map(|f| (f.path.clone(), f.data.expose().to_vec(), f.mode))
        .collect();
    assert_eq!(
        got,
        vec![
            ("alias.pem".into(), b"CERT".to_vec(), Some(0o644)),
            ("entitlement/cert.pem".into(), b"CERT".to_vec(), Some(0o644)),
            ("entitlement/key.pem".into(), b"KEY".to_vec(), Some(0o600)),
            ("tool".into(), b"#!".to_vec(), Some(0o644)),
        ]
    );
}

#[test]
fn symlink_pointing_outside_is_refused_with_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    write(&d.path().join("ok"), b"x", 0o600);
    std::os::unix::fs::symlink("/etc/passwd", d.path().join("evil")).unwrap();
    let e = fetch(d.path(), d.path()).unwrap_err().to_string();
    assert!(e.starts_with("denied: evil: symlink points outside"), "{e}");
    let d2 = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("../../../../etc", d2.path().join("up")).unwrap();
    let e = fetch(d2.path(), d2.path()).unwrap_err().to_string();
    assert!(e.contains("up: symlink points outside"), "{e}");
}

#[test]
fn missing_directory_means_no_files() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("nope");
    assert!(fetch(&missing, &missing).unwrap().is_empty());
}

#[test]
fn a_directory_outside_the_grant_does_not_exist_for_the_plugin() {
    // WASI reports an ungranted path as missing, so host-dir sees nothing;
    // config validation refuses such a `dir` up front (config unit tests).
    let granted = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    write(&other.path().join("secret"), b"nope", 0o600);
    assert!(fetch(other.path(), granted.path()).unwrap().is_empty());
}
