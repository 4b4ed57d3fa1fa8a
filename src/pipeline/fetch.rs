//! Stage three: run the planned sources' plugins, sandboxed, concurrently,
//! and collect what each returned. A required source's failure fails the
//! whole fetch (L6); an optional one's is logged and skipped.

use crate::pipeline::plan::PlannedSource;
use crate::plugin::{Call, Plugin, PluginError, PluginHost, PluginRequest};
use std::sync::Arc;

pub use crate::pipeline::check::Fetched;

/// A required source failed.
#[derive(Debug, thiserror::Error)]
#[error("source {name:?}: {error}")]
pub struct FetchError {
    pub name: String,
    pub error: PluginError,
}

/// Where a planned source's compiled plugin comes from.
pub trait Plugins: Sync {
    /// The plugin `src` runs, ready to instantiate.
    fn plugin(&self, host: &PluginHost, src: &PlannedSource) -> Result<Arc<Plugin>, PluginError>;
}

/// Loaded for this call: read, digest-checked, taken from the compiled
/// cache and type-checked now (a process that runs one request).
#[derive(Debug, Default)]
pub struct Cold;

impl Plugins for Cold {
    fn plugin(&self, host: &PluginHost, src: &PlannedSource) -> Result<Arc<Plugin>, PluginError> {
        host.load(&src.plugin).map(Arc::new)
    }
}

/// Run one planned source.
pub async fn fetch_one(
    host: &PluginHost,
    plugins: &dyn Plugins,
    src: &PlannedSource,
    req: &PluginRequest,
) -> Result<Fetched, FetchError> {
    let wrap = |error| FetchError {
        name: src.name.clone(),
        error,
    };
    let plugin = plugins.plugin(host, src).map_err(wrap)?;
    let call = Call {
        source: &src.name,
        grant: &src.grant,
        config: &src.config,
        limits: &src.limits,
        request: req,
        daemon: src.daemon.as_deref(),
    };
    let out = host.fetch(&plugin, call).await.map_err(wrap)?;
    Ok(Fetched {
        source: src.name.clone(),
        precedence: src.precedence,
        files: out.files,
        expires: out.expires,
    })
}

/// Run every planned source concurrently; results come back in plan order.
pub async fn fetch_all(
    host: &PluginHost,
    plugins: &dyn Plugins,
    planned: &[PlannedSource],
    req: &PluginRequest,
) -> Result<Vec<Fetched>, FetchError> {
    let results =
        futures_util::future::join_all(planned.iter().map(|s| fetch_one(host, plugins, s, req)))
            .await;
    let mut out = Vec::with_capacity(results.len());
    for (src, r) in planned.iter().zip(results) {
        match r {
            Ok(f) => out.push(f),
            Err(e) if !src.required => {
                tracing::warn!(source = %src.name, "optional source failed, skipped: {}", e.error);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
