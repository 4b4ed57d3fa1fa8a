//! The plugin host the in-process tests share, the guest fixtures, and one
//! sandboxed call as the hook makes it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A guest component built from `plugins/` (fixtures included).
pub fn guest(stem: &str) -> PathBuf {
    Path::new(privy::plugin::GUEST_DIR).join(format!("{stem}.wasm"))
}

/// A component cache shared by every test in this process, so each plugin
/// is compiled once (a debug Cranelift takes about a second a plugin).
pub fn shared_cache() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| super::process_dir("privy-test-cache", 0o700))
}

/// The plugin host every in-process test shares (one engine, one cache).
pub fn plugin_host() -> &'static privy::plugin::PluginHost {
    static H: OnceLock<privy::plugin::PluginHost> = OnceLock::new();
    H.get_or_init(|| privy::plugin::PluginHost::new(shared_cache()).unwrap())
}

/// One sandboxed `fetch` exactly as the hook makes it, on its own
/// current-thread runtime, with a bare request for container "c": the files.
pub fn call_plugin(
    host: &privy::plugin::PluginHost,
    plugin: &privy::plugin::Plugin,
    source: &str,
    grant: &privy::config::Grant,
    config: &std::collections::BTreeMap<String, String>,
    limits: &privy::config::Limits,
) -> Result<Vec<privy::plugin::RawFile>, privy::plugin::PluginError> {
    call_plugin_output(host, plugin, source, grant, config, limits).map(|o| o.files)
}

/// [`call_plugin`], with all the call gave: the files and their expiry.
pub fn call_plugin_output(
    host: &privy::plugin::PluginHost,
    plugin: &privy::plugin::Plugin,
    source: &str,
    grant: &privy::config::Grant,
    config: &std::collections::BTreeMap<String, String>,
    limits: &privy::config::Limits,
) -> Result<privy::plugin::Output, privy::plugin::PluginError> {
    let request = privy::plugin::PluginRequest::bare("c", privy::request::Stage::Run);
    let call = privy::plugin::Call {
        source,
        grant,
        config,
        limits,
        request: &request,
        daemon: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(host.fetch(plugin, call))
}

/// The hostile fixture (`plugins/hostile`), loaded once: what it does is
/// chosen by its `mode` config value.
pub fn hostile() -> &'static privy::plugin::Plugin {
    static C: OnceLock<privy::plugin::Plugin> = OnceLock::new();
    C.get_or_init(|| {
        plugin_host()
            .load_bytes(&std::fs::read(guest("hostile")).unwrap())
            .unwrap()
    })
}
