//! Stage two: which sources run for this request, with which grants.
//! Applies each source's `when` to the request and assigns precedence.

use crate::config::builtin::catalog;
use crate::config::{Config, Grant, Limits, SourceConfig};
use crate::request::Request;
use std::collections::BTreeMap;

pub use crate::config::{PluginRef, Precedence};

/// One source that will run for this request.
#[derive(Debug, Clone)]
pub struct PlannedSource {
    pub name: String,
    pub plugin: PluginRef,
    pub required: bool,
    pub precedence: Precedence,
    pub grant: Grant,
    pub config: BTreeMap<String, String>,
    pub limits: Limits,
    /// The daemon's socket, when the grant has `daemon = true`.
    pub daemon: Option<std::path::PathBuf>,
}

/// Whether `src` applies to `req`.
pub fn matches(src: &SourceConfig, req: &Request) -> bool {
    let Some(w) = &src.when else { return true };
    if w.stage.is_some_and(|st| st != req.stage) {
        return false;
    }
    if let Some(key) = &w.annotation {
        match req.annotations.get(key) {
            None => return false,
            Some(v) => {
                if w.value.as_ref().is_some_and(|want| want != v) {
                    return false;
                }
            }
        }
    }
    crate::pod::when_matches(w, &req.annotations)
}

/// Plan one config source, regardless of `when`. A built-in plugin ranks
/// as its manifest says; any other is an operator's source.
pub fn plan_source(src: &SourceConfig, limits: &Limits) -> PlannedSource {
    let plugin = match &src.plugin {
        PluginRef::File { path, sha256 } => PluginRef::File {
            path: path.clone(),
            sha256: sha256.to_ascii_lowercase(),
        },
        p => p.clone(),
    };
    let precedence = match &src.plugin {
        PluginRef::Embedded(name) => catalog()
            .get(name)
            .map_or(Precedence::Operator, |b| b.precedence),
        _ => Precedence::Operator,
    };
    PlannedSource {
        name: src.name.clone(),
        plugin,
        required: src.required,
        precedence,
        grant: src.grant.clone(),
        config: src.config.clone(),
        limits: limits.clone(),
        daemon: None,
    }
}

/// The sources that run for `req`, in config order. A container that
/// carries a ticket always gets a source of the plugin that serves tickets
/// (`upload`: the implicit one unless the config names its own), so an
/// upload can never be silently ignored;
/// a pod's sandbox container gets no source at all.
pub fn plan(cfg: &Config, req: &Request) -> Vec<PlannedSource> {
    // A pod's sandbox ("pause") container runs no workload, yet it carries
    // the pod's annotations (io.privy.vault, even a ticket): it gets nothing.
    if crate::pod::is_sandbox(&req.annotations) {
        return Vec::new();
    }
    let mut out: Vec<PlannedSource> = cfg
        .sources
        .iter()
        .filter(|s| matches(s, req))
        .map(|s| plan_source(s, &cfg.limits))
        .collect();
    if req
        .annotations
        .contains_key(crate::contract::ANNOTATION_TICKET)
        && !out.iter().any(|p| catalog().claims_tickets(&p.plugin))
    {
        if let Some(mut up) = catalog().implicit_ticket_source() {
            if out.iter().any(|p| p.name == up.name) {
                up.name = format!("privy-{}", up.name);
            }
            out.push(plan_source(&up, &cfg.limits));
        }
    }
    for p in &mut out {
        if p.grant.daemon {
            p.daemon = Some(cfg.daemon.socket_path());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{Spec, State};
    use std::path::Path;

    fn req(annotations: &str) -> Request {
        let state = State::parse(
            format!(r#"{{"id":"c","bundle":"/b","annotations":{annotations}}}"#).as_bytes(),
        )
        .unwrap();
        Request::from_oci(
            state,
            serde_json::from_str::<Spec>(r#"{"root":{"path":"r"}}"#).unwrap(),
        )
        .unwrap()
    }

    fn cfg(text: &str) -> Config {
        Config::parse(text, Path::new("t.toml")).unwrap()
    }

    #[test]
    fn when_filters_by_annotation_value_and_stage() {
        let c = cfg(r#"
            [[source]]
            name = "always"
            plugin = "host-dir"
            [[source]]
            name = "vaulty"
            plugin = "host-dir"
            when = { annotation = "io.privy.vault" }
            [[source]]
            name = "exact"
            plugin = "host-dir"
            when = { annotation = "team", value = "blue" }
            [[source]]
            name = "builds"
            plugin = "host-dir"
            when = { stage = "build" }
        "#);
        let names = |r: &Request| plan(&c, r).into_iter().map(|p| p.name).collect::<Vec<_>>();
        assert_eq!(names(&req("{}")), vec!["always"]);
        assert_eq!(
            names(&req(r#"{"io.privy.vault":"","team":"red"}"#)),
            vec!["always", "vaulty"]
        );
        assert_eq!(
            names(&req(r#"{"team":"blue","io.privy.stage":"build"}"#)),
            vec!["always", "exact", "builds"]
        );
    }

    #[test]
    fn precedence_orders_upload_over_operator_over_host_dir() {
        assert!(Precedence::Upload > Precedence::UserReference);
        assert!(Precedence::UserReference > Precedence::Operator);
        assert!(Precedence::Operator > Precedence::HostDir);
        let c = cfg("[[source]]\nname='x'\nplugin='/p/x.wasm'\nsha256='AB00000000000000000000000000000000000000000000000000000000000000'\n");
        let p = &plan(&c, &req("{}"))[0];
        assert_eq!(p.precedence, Precedence::Operator);
        assert!(matches!(&p.plugin, PluginRef::File { sha256, .. } if sha256.starts_with("ab")));
    }
}
