//! Builds the guest plugins in `plugins/` for wasm32-wasip2 with a nested
//! cargo (its own target dir, a clean environment), then embeds the shipped
//! ones in the binary with their SHA-256, and points tests at the fixtures.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Plugins shipped inside the binary: (name, crate file stem).
const EMBEDDED: &[(&str, &str)] = &[("host-dir", "host_dir"), ("upload", "upload")];

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

    let mut code = String::from("/// Plugins built from `plugins/` and shipped in the binary.\npub static EMBEDDED: &[EmbeddedPlugin] = &[\n");
    for (name, stem) in EMBEDDED {
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

/// The outer target dir: the ancestor of OUT_DIR that holds CACHEDIR.TAG.
fn outer_target_dir(out: &Path) -> PathBuf {
    out.ancestors()
        .find(|p| p.join("CACHEDIR.TAG").exists())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out.join("guest"))
}
