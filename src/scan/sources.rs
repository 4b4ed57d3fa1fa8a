//! `privy scan --sources`: the needles are what the configured sources
//! would inject for a given request (annotations, stage), fetched through
//! the same plan → fetch → check stages and plugin host as the hook.

use super::Needle;
use crate::config::Config;
use crate::plugin::{PluginHost, PluginRequest};
use crate::request::{Request, Stage};
use std::collections::BTreeMap;

/// Why the sources could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    #[error(transparent)]
    Plugin(#[from] crate::plugin::PluginError),
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
    #[error(transparent)]
    Check(#[from] crate::check::CheckError),
    #[error("async runtime: {0}")]
    Runtime(std::io::Error),
}

/// Run the sources that apply to a request with `annotations` at `stage`
/// and return their files as needles named `source/path`.
pub fn needles_from_sources(
    cfg: &Config,
    annotations: BTreeMap<String, String>,
    stage: Stage,
) -> Result<Vec<Needle>, SourcesError> {
    let req = Request {
        container_id: "privy-scan".into(),
        pid: None,
        bundle: Default::default(),
        root: Default::default(),
        stage,
        annotations,
        image: None,
        names: Vec::new(),
        user: Default::default(),
        uid_mappings: Vec::new(),
        gid_mappings: Vec::new(),
    };
    let planned = crate::plan::plan(cfg, &req);
    if planned.is_empty() {
        return Ok(Vec::new());
    }
    let host = PluginHost::new(&cfg.cache_dir)?;
    let preq = PluginRequest::from(&req);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(SourcesError::Runtime)?;
    let fetched = rt.block_on(crate::fetch::fetch_all(&host, &planned, &preq))?;
    let checked = crate::check::check(fetched, &cfg.limits)?;
    Ok(checked
        .files
        .into_iter()
        .map(|f| Needle::from_secret(format!("{}/{}", f.source, f.path), f.data))
        .collect())
}
