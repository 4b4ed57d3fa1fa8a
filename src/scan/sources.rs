//! `privy scan --sources`: the needles are what the configured sources
//! would inject for a given request (annotations, stage), gathered through
//! the same plan → fetch → check and plugin host as the hook
//! ([`crate::pipeline::gather`]).

use super::Needle;
use crate::config::Config;
use crate::contract::Stage;
use crate::pipeline::gather::{self, GatherError};
use crate::pipeline::request::Request;
use std::collections::BTreeMap;

/// Run the sources that apply to a request with `annotations` at `stage`
/// and return their files as needles named `source/path`.
pub fn needles_from_sources(
    cfg: &Config,
    annotations: BTreeMap<String, String>,
    stage: Stage,
) -> Result<Vec<Needle>, GatherError> {
    let req = Request::synthetic("privy-scan", stage, annotations);
    Ok(gather::gather(cfg, &req)?
        .checked
        .files
        .into_iter()
        .map(|f| Needle::from_secret(format!("{}/{}", f.source, f.path), f.data))
        .collect())
}
