//! Builds the guest plugins in `plugins/` for wasm32-wasip2 with a nested
//! cargo (its own target dir, a clean environment), then embeds the shipped
//! ones in the binary with their SHA-256, and points tests at the fixtures.
//!
//! The shipped ones are the crates with a `builtin.toml`: the manifest
//! that tells the core what the plugin is (`config::builtin`, which
//! `crates/core/build.rs` compiles in). This script embeds those crates'
//! wasm (`embedded.rs`), so adding a built-in plugin touches `plugins/`
//! only.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed=plugins");
    println!("cargo:rerun-if-changed=wit");
    println!("cargo:rerun-if-env-changed=PRIVY_GUEST_TARGET_DIR");

    let guest_target = std::env::var_os("PRIVY_GUEST_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| outer_target_dir(&out).join("wasm-guests"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&guest_target)
        .current_dir(manifest.join("plugins"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_MAKEFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CLIPPY_ARGS")
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .status()
        .expect("cannot run cargo for the guest plugins");
    assert!(
        status.success(),
        "building plugins/ for wasm32-wasip2 failed (is the target installed? `rustup target add wasm32-wasip2`)"
    );
    let wasm_dir = guest_target.join("wasm32-wasip2").join("release");

    let builtins = builtin_manifests(&manifest.join("plugins"));
    let mut code = String::from("/// Plugins built from `plugins/` and shipped in the binary.\npub static EMBEDDED: &[EmbeddedPlugin] = &[\n");
    for (name, _) in &builtins {
        let stem = name.replace('-', "_");
        let src = wasm_dir.join(format!("{stem}.wasm"));
        let bytes = std::fs::read(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        let dst = out.join(format!("{stem}.wasm"));
        std::fs::write(&dst, &bytes).unwrap();
        let digest = hex::encode(Sha256::digest(&bytes));
        code.push_str(&format!(
            "    EmbeddedPlugin {{ name: {name:?}, wasm: include_bytes!({:?}), sha256: {digest:?} }},\n",
            dst.display().to_string()
        ));
    }
    code.push_str("];\n");
    std::fs::write(out.join("embedded.rs"), code).unwrap();
    println!("cargo:rustc-env=PRIVY_GUEST_DIR={}", wasm_dir.display());
}

/// The built-in plugins: every `plugins/<name>/builtin.toml`, sorted by
/// name, each checked to declare `name = "<name>"` (its folder's name,
/// which is also its crate's).
fn builtin_manifests(plugins: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(plugins).expect("plugins/") {
        let dir = e.expect("plugins/ entry").path();
        let manifest = dir.join("builtin.toml");
        if !manifest.is_file() {
            continue;
        }
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&manifest).unwrap();
        let declared = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("name")?.trim().strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_owned());
        assert_eq!(
            declared.as_deref(),
            Some(name.as_str()),
            "{}: `name` must be the folder's name",
            manifest.display()
        );
        out.push((name, manifest));
    }
    out.sort();
    out
}

/// The outer target dir: the ancestor of OUT_DIR that holds CACHEDIR.TAG.
fn outer_target_dir(out: &Path) -> PathBuf {
    out.ancestors()
        .find(|p| p.join("CACHEDIR.TAG").exists())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out.join("guest"))
}
