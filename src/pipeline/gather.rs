//! plan -> fetch -> check for one request: the only path from a request to
//! checked files. The hook (through [`InProcess`]), `privy scan --sources`,
//! `privy build` (what to scan its image for) and `privy plugin run` call
//! it; a long-lived process with a warm plugin host calls [`gather_with`].

use super::check::{self, CheckError, Checked};
use super::fetch::{self, FetchError, Plugins};
use super::plan::{self, PlannedSource};
use super::request::Request;
use crate::config::Config;
use crate::plugin::{PluginError, PluginHost, PluginRequest};
use std::time::{Duration, Instant};

/// What a request gets, checked, and what it took.
#[derive(Debug, Default)]
pub struct Gathered {
    /// The sources that ran (their names are for logs).
    pub planned: Vec<PlannedSource>,
    /// The files, by path, and the overrides between sources.
    pub checked: Checked,
    /// Planning, loading, running the plugins and checking.
    pub fetch_time: Duration,
}

/// Why a request's files could not be had. Each variant's text is its
/// cause's: a failing source reads `source "NAME": CAUSE`.
#[derive(Debug, thiserror::Error)]
pub enum GatherError {
    /// The plugin host could not be made.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// A required source failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error("async runtime: {0}")]
    Runtime(std::io::Error),
    /// The node agent, asked for the files, said why not (its own line).
    #[error("{0}")]
    Agent(String),
}

/// Plan `req` and gather what it gets, with a plugin host made for this
/// one call (compiled code from `cfg.cache_dir`).
pub fn gather(cfg: &Config, req: &Request) -> Result<Gathered, GatherError> {
    gather_planned(cfg, plan::plan(cfg, req), req)
}

/// Gather what an already planned set of sources gives `req`. An empty
/// plan returns nothing without making a plugin host: a container no
/// source applies to costs no wasmtime at all.
pub fn gather_planned(
    cfg: &Config,
    planned: Vec<PlannedSource>,
    req: &Request,
) -> Result<Gathered, GatherError> {
    if planned.is_empty() {
        return Ok(Gathered::default());
    }
    let started = Instant::now();
    let host = PluginHost::new(&cfg.cache_dir)?;
    // One call, its plugins run concurrently: a current-thread runtime is
    // all it needs, and the cheapest to start.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(GatherError::Runtime)?;
    let mut got = rt.block_on(fetch_and_check(&host, &fetch::Cold, cfg, planned, req))?;
    got.fetch_time = started.elapsed();
    Ok(got)
}

/// Gather what `planned` gives `req` on the caller's runtime, with its
/// long-lived (pooled, warm) plugin host and the plugins it holds ready
/// (the node agent).
pub async fn gather_with(
    host: &PluginHost,
    plugins: &dyn Plugins,
    cfg: &Config,
    planned: Vec<PlannedSource>,
    req: &Request,
) -> Result<Gathered, GatherError> {
    let started = Instant::now();
    if planned.is_empty() {
        return Ok(Gathered::default());
    }
    let mut got = fetch_and_check(host, plugins, cfg, planned, req).await?;
    got.fetch_time = started.elapsed();
    Ok(got)
}

async fn fetch_and_check(
    host: &PluginHost,
    plugins: &dyn Plugins,
    cfg: &Config,
    planned: Vec<PlannedSource>,
    req: &Request,
) -> Result<Gathered, GatherError> {
    let preq = PluginRequest::from(req);
    let fetched = fetch::fetch_all(host, plugins, &planned, &preq).await?;
    let checked = check::check_named(fetched, &cfg.limits, &req.names)?;
    Ok(Gathered {
        planned,
        checked,
        fetch_time: Duration::ZERO,
    })
}

/// The hook's gatherer: the whole pipeline in this process.
#[derive(Debug, Default)]
pub struct InProcess;

impl crate::hook::Gatherer for InProcess {
    fn gather(
        &mut self,
        cfg: &Config,
        req: &Request,
        planned: Vec<PlannedSource>,
    ) -> Result<Checked, Box<dyn std::error::Error + Send + Sync>> {
        Ok(gather_planned(cfg, planned, req)?.checked)
    }
}
