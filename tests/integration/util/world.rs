//! A test's private world: a config whose cache, state, log and audit key
//! live in a temp dir, and a host private directory for `host-dir`.

use super::{privy_with_stdin, shared_cache, text};
use std::path::{Path, PathBuf};
use std::process::Output;

/// One test's private world: a config whose state, log and audit key live
/// in a temp dir, and a host private directory.
pub struct World {
    pub dir: tempfile::TempDir,
    pub private_d: PathBuf,
    pub config: PathBuf,
}

impl World {
    /// A world whose config is the default `host-dir` source plus `extra` TOML.
    pub fn new(extra_top: &str, extra_sources: &str) -> World {
        let dir = tempfile::Builder::new()
            .prefix("privy-world-")
            .tempdir()
            .unwrap();
        let private_d = dir.path().join("private.d");
        std::fs::create_dir_all(&private_d).unwrap();
        let config = dir.path().join("privy.toml");
        let text = format!(
            "cache_dir = {cache:?}\nstate_dir = {state:?}\nlog_file = {log:?}\naudit_key = {key:?}\n{extra_top}\n\
             [[source]]\nname = \"host-dir\"\nplugin = \"host-dir\"\ngrant.dirs = [{pd:?}]\n{extra_sources}\n",
            cache = shared_cache(),
            state = dir.path().join("state"),
            log = dir.path().join("privy.log"),
            key = dir.path().join("audit.key"),
            pd = private_d,
        );
        std::fs::write(&config, text).unwrap();
        World {
            dir,
            private_d,
            config,
        }
    }

    /// Put a private file in the host directory.
    pub fn put(&self, rel: &str, data: &[u8], mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.private_d.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    /// Append TOML to the config (a source, a `[daemon]` table).
    pub fn append_config(&self, toml: &str) {
        let mut cfg = std::fs::read_to_string(&self.config).unwrap();
        cfg.push('\n');
        cfg.push_str(toml);
        std::fs::write(&self.config, cfg).unwrap();
    }

    /// `privy install --hooks-dir DIR` with this config: privy's hooks.d
    /// entries, for `podman|buildah --hooks-dir`.
    pub fn install_hooks_dir(&self, dir: &Path) {
        let out = self.privy(&["install", "--hooks-dir", dir.to_str().unwrap()]);
        assert!(out.status.success(), "install: {}", text(&out.stderr));
    }

    pub fn log(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("privy.log")).unwrap_or_default()
    }

    /// Run `privy --config <ours> ARGS`.
    pub fn privy(&self, args: &[&str]) -> Output {
        privy_with_stdin(
            &[&["--config", self.config.to_str().unwrap()], args].concat(),
            b"",
        )
    }
}
