//! `creds`: the worked example of docs/plugins.md.
//!
//! systemd decrypts a service's credentials (`LoadCredentialEncrypted=`,
//! `systemd-creds encrypt`) into a private directory, one file per
//! credential. This source hands chosen credentials to containers:
//!
//! - `dir`: the credentials directory (it must be in `grant.dirs`);
//! - `map`: `name[:dest/path],...`; each credential `name` becomes the
//!   file `dest/path` (default: `name`) under the target, mode 0400;
//! - `optional`: `true` to skip missing credentials instead of failing.
//!
//! A container that sets `io.privy.names` gets only the paths it names.

use privy_plugin::{PrivateFile, Request, Source, SourceError};

struct Creds;

/// Parse `map` into (credential name, destination path) pairs.
fn parse_map(map: &str) -> Result<Vec<(String, String)>, SourceError> {
    let mut out = Vec::new();
    for item in map.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, dest) = item.split_once(':').unwrap_or((item, item));
        // A credential name is one path component, as systemd requires.
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(SourceError::InvalidConfig(format!(
                "map: bad credential name {name:?}"
            )));
        }
        out.push((name.to_string(), dest.to_string()));
    }
    if out.is_empty() {
        return Err(SourceError::InvalidConfig(
            "config key `map` is empty".into(),
        ));
    }
    Ok(out)
}

impl Source for Creds {
    fn fetch(req: Request) -> Result<Vec<PrivateFile>, SourceError> {
        let dir = privy_plugin::config("dir")
            .ok_or_else(|| SourceError::InvalidConfig("config key `dir` is required".into()))?;
        let map = parse_map(&privy_plugin::config("map").unwrap_or_default())?;
        let optional = privy_plugin::config("optional").as_deref() == Some("true");
        let mut files = Vec::new();
        for (name, dest) in map {
            if !req.names.is_empty() && !req.names.contains(&dest) {
                continue;
            }
            match std::fs::read(format!("{dir}/{name}")) {
                Ok(data) => files.push(PrivateFile {
                    path: dest,
                    data,
                    mode: Some(0o400),
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && optional => {
                    privy_plugin::warn(&format!("credential {name} missing; skipped"));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(SourceError::NotFound(format!(
                        "credential {name} is not in {dir}"
                    )));
                }
                Err(e) => return Err(SourceError::Unavailable(format!("credential {name}: {e}"))),
            }
        }
        Ok(files)
    }
}

privy_plugin::export_source!(Creds);
