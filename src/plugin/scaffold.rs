//! `privy plugin new NAME`: a ready-to-build source crate that builds where
//! it is written, outside this repository, with only registry crates. It
//! carries the WIT contract and the SDK's source with it.

use std::path::{Path, PathBuf};

const WIT: &str = include_str!("../../wit/privy-source.wit");
const SDK_LIB: &str = include_str!("../../plugins/privy-plugin/src/lib.rs");

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("plugin name {0:?}: use 1-64 of a-z, 0-9 and `-`, starting with a letter")]
    Name(String),
    #[error("{0} already exists; refusing to overwrite it")]
    Exists(PathBuf),
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

fn valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Write the crate into `dir` (which must not exist). Returns the files written.
pub fn new_plugin(dir: &Path, name: &str) -> Result<Vec<PathBuf>, ScaffoldError> {
    if !valid(name) {
        return Err(ScaffoldError::Name(name.into()));
    }
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir.to_owned()));
    }
    let sdk = SDK_LIB.replace("path: \"../../wit\"", "path: \"../wit\"");
    let files: Vec<(&str, String)> = vec![
        ("Cargo.toml", cargo_toml(name)),
        (
            ".cargo/config.toml",
            "[build]\ntarget = \"wasm32-wasip2\"\n".into(),
        ),
        ("src/lib.rs", LIB_RS.replace("{name}", name)),
        (
            "README.md",
            README
                .replace("{stem}", &name.replace('-', "_"))
                .replace("{name}", name),
        ),
        ("wit/privy-source.wit", WIT.into()),
        ("privy-plugin/Cargo.toml", SDK_TOML.into()),
        ("privy-plugin/src/lib.rs", sdk),
        (".gitignore", "target/\n".into()),
    ];
    let mut written = Vec::new();
    for (rel, text) in files {
        let p = dir.join(rel);
        let io = |error| ScaffoldError::Io {
            path: p.clone(),
            error,
        };
        std::fs::create_dir_all(p.parent().unwrap()).map_err(io)?;
        std::fs::write(&p, text).map_err(io)?;
        written.push(p);
    }
    Ok(written)
}

fn cargo_toml(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
description = "A privy source plugin"

[lib]
crate-type = ["cdylib"]

[dependencies]
privy-plugin = {{ path = "privy-plugin" }}

# Standalone: not part of any enclosing workspace.
[workspace]
members = ["privy-plugin"]

[profile.release]
opt-level = "s"
lto = true
strip = true
panic = "abort"
codegen-units = 1
"#
    )
}

const SDK_TOML: &str = r#"[package]
name = "privy-plugin"
version = "0.1.0"
edition = "2021"
description = "SDK for privy source plugins (vendored by `privy plugin new`)"

[dependencies]
wit-bindgen = "0.63"
"#;

const LIB_RS: &str = r#"//! {name}: a privy source plugin.
//!
//! `fetch` gets a request (container id, stage, annotations, user, the
//! names asked for) and returns private files. It sees only what its grant
//! in privy.toml names: read-only directories (through std::fs), single
//! files (`privy_plugin::read_file`), and its own `config` values.

use privy_plugin::{PrivateFile, Request, Source, SourceError};

struct Plugin;

impl Source for Plugin {
    fn fetch(req: Request) -> Result<Vec<PrivateFile>, SourceError> {
        // Example: one file whose content comes from the `greeting` config
        // value, for containers that carry the annotation `io.example.greet`.
        if req.annotation("io.example.greet").is_none() {
            return Ok(Vec::new());
        }
        let greeting = privy_plugin::config("greeting")
            .ok_or_else(|| SourceError::InvalidConfig("config key `greeting` is required".into()))?;
        privy_plugin::info(&format!("greeting container {}", req.container_id));
        Ok(vec![PrivateFile { path: "greeting.txt".into(), data: greeting.into_bytes(), mode: Some(0o400) }])
    }
}

privy_plugin::export_source!(Plugin);
"#;

const README: &str = r#"# {name}

A privy source plugin.

Build (the target comes from `rustup target add wasm32-wasip2`):

    cargo build --release
    # -> target/wasm32-wasip2/release/{stem}.wasm

Check it and run it as the hook would, without a container:

    privy plugin check target/wasm32-wasip2/release/{stem}.wasm
    privy plugin run target/wasm32-wasip2/release/{stem}.wasm --config greeting=hello --annotation io.example.greet=1

Install: copy the .wasm somewhere root-owned, then add to /etc/privy/privy.toml

    [[source]]
    name = "{name}"
    plugin = "/usr/local/lib/privy/{stem}.wasm"
    sha256 = "<sha256sum of the file>"
    [source.config]
    greeting = "hello"

`wit/privy-source.wit` is the contract; `privy-plugin/` is the SDK.
"#;

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_checked_and_existing_dirs_are_never_overwritten() {
        let d = tempfile::tempdir().unwrap();
        assert!(super::new_plugin(&d.path().join("x"), "Bad Name").is_err());
        let e = super::new_plugin(d.path(), "ok").unwrap_err().to_string();
        assert!(e.contains("already exists"), "{e}");
        let files = super::new_plugin(&d.path().join("p"), "my-source").unwrap();
        assert_eq!(files.len(), 8);
        let sdk = std::fs::read_to_string(d.path().join("p/privy-plugin/src/lib.rs")).unwrap();
        assert!(sdk.contains("path: \"../wit\""));
    }
}
