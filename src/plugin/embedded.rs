//! The built-in plugins' components, compiled into the binary by build.rs
//! (every `plugins/<name>/` with a `builtin.toml`), with their SHA-256.
//! What the core knows about them (precedence, config checks) is their
//! manifest's, `config::builtin`.

/// A plugin shipped inside the binary.
pub struct EmbeddedPlugin {
    pub name: &'static str,
    pub wasm: &'static [u8],
    pub sha256: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// The embedded plugin called `name`.
pub fn embedded(name: &str) -> Option<&'static EmbeddedPlugin> {
    EMBEDDED.iter().find(|p| p.name == name)
}

/// Names of all embedded plugins.
pub fn embedded_names() -> Vec<&'static str> {
    EMBEDDED.iter().map(|p| p.name).collect()
}
