//! Lists the built-in plugins' manifests, `plugins/*/builtin.toml`, into
//! `OUT_DIR/builtins.rs` for `config::builtin` (their text, compiled in;
//! no plugin is built or embedded here: the root package does that).

use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let plugins = manifest.join("../../plugins");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed={}", plugins.display());
    let mut list = String::from(
        "/// (path, text) of every `plugins/*/builtin.toml`, by folder name.\nconst MANIFESTS: &[(&str, &str)] = &[\n",
    );
    for (name, path) in builtin_manifests(&plugins) {
        println!("cargo:rerun-if-changed={}", path.display());
        list.push_str(&format!(
            "    (\"plugins/{name}/builtin.toml\", include_str!({:?})),\n",
            path.display().to_string()
        ));
    }
    list.push_str("];\n");
    std::fs::write(out.join("builtins.rs"), list).unwrap();
}

/// Every `plugins/<name>/builtin.toml`, sorted by name.
fn builtin_manifests(plugins: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(plugins).expect("plugins/") {
        let dir = e.expect("plugins/ entry").path();
        let manifest = dir.join("builtin.toml");
        if manifest.is_file() {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            out.push((name, manifest.canonicalize().unwrap()));
        }
    }
    out.sort();
    out
}
