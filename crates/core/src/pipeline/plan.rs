//! Stage two: which sources run for this request, with which grants.
//! Applies each source's `when` to the request (who asks included:
//! [`users_allow`]) and assigns precedence.

use crate::config::builtin::catalog;
use crate::config::{glob, Config, Grant, Limits, SourceConfig, UserMatch, When};
use crate::engines::cri::{self, identify, Identity};
use crate::pipeline::request::{Caller, Request};
use std::collections::BTreeMap;

pub use crate::config::{PluginRef, Precedence};

/// One source that will run for this request.
#[derive(Debug, Clone)]
pub struct PlannedSource {
    pub name: String,
    pub plugin: PluginRef,
    pub required: bool,
    /// How often the node agent refreshes what it gave (the config's
    /// `refresh`); `None`: never on its own.
    pub refresh: Option<std::time::Duration>,
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
    when_matches(w, &req.annotations)
}

/// Whether `users` (a source's `when.users`) lets `caller` receive the
/// source's files. Absent: host root only, so a rootful engine's hook gets
/// what it always got and a rootless one gets no operator source until the
/// operator names its user. Present: exactly the callers it names, by uid,
/// user name or group; root too only if listed. An unknown caller (no host
/// uid) matches nothing. Pure but for the user database, read only when an
/// entry names a user or a group: the hook calls it with its own
/// [`Caller::of_this_process`], a node agent with the `SO_PEERCRED` uid.
pub fn users_allow(users: Option<&[UserMatch]>, caller: &Caller) -> bool {
    let Some(uid) = caller.uid else {
        return false;
    };
    let Some(users) = users else {
        return uid == 0;
    };
    users.iter().any(|u| match u {
        UserMatch::Uid(id) => *id == uid,
        UserMatch::User(n) => caller.name() == Some(n.as_str()),
        UserMatch::Group(g) => caller.groups().iter().any(|have| have == g),
    })
}

/// Whether `src` may give files to `caller`: a source that serves tickets
/// (the caller's own uploads, checked per uid by the daemon) always; any
/// other (operator) source as its `when.users` says.
pub fn source_allows(src: &SourceConfig, caller: &Caller) -> bool {
    catalog().claims_tickets(&src.plugin)
        || users_allow(src.when.as_ref().and_then(|w| w.users.as_deref()), caller)
}

/// Whether `w`'s pod conditions hold for a container with annotations `a`.
/// A `when` without pod conditions holds everywhere; one with any holds
/// only for a workload container of a pod whose every named field is
/// present and matches its glob.
pub fn when_matches(w: &When, a: &BTreeMap<String, String>) -> bool {
    if !w.has_pod_conditions() {
        return true;
    }
    let Identity::Pod(p) = identify(a) else {
        return false;
    };
    if p.sandbox {
        return false;
    }
    let field = |want: &Option<String>, have: &Option<String>| match (want, have) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(g), Some(v)) => glob::matches(g, v),
    };
    field(&w.namespace, &p.namespace)
        && field(&w.pod, &p.name)
        && field(&w.container, &p.container)
        && field(&w.image, &p.image)
        && w.pod_annotations
            .iter()
            .all(|(k, g)| a.get(k).is_some_and(|v| glob::matches(g, v)))
}

/// The plugin as a planned source runs it: a `.wasm` file's pinned digest
/// in lowercase (the cache is keyed by it).
pub fn plan_source_plugin(plugin: &PluginRef) -> PluginRef {
    match plugin {
        PluginRef::File { path, sha256 } => PluginRef::File {
            path: path.clone(),
            sha256: sha256.to_ascii_lowercase(),
        },
        p => p.clone(),
    }
}

/// Plan one config source, regardless of `when`. A built-in plugin ranks
/// as its manifest says; any other is an operator's source.
pub fn plan_source(src: &SourceConfig, limits: &Limits) -> PlannedSource {
    let plugin = plan_source_plugin(&src.plugin);
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
        refresh: src.refresh,
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
    if cri::is_sandbox(&req.annotations) {
        return Vec::new();
    }
    let mut out: Vec<PlannedSource> = cfg
        .sources
        .iter()
        .filter(|s| matches(s, req) && source_allows(s, &req.caller))
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

    use crate::engines::cri::fixtures::*;
    use crate::engines::cri::*;

    fn when(toml_text: &str) -> When {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn when_matches_namespace_pod_container_image_and_pod_annotations() {
        let w = when(
            r#"namespace = "payments"
               image = "registry.example.com/payments/*""#,
        );
        let img = "registry.example.com/payments/api:1.2";
        for a in [
            containerd("payments", "api-7", "app", img),
            crio("payments", "api-7", "app", img),
        ] {
            assert!(when_matches(&w, &a));
        }
        for a in [
            containerd("billing", "api-7", "app", img),
            containerd(
                "payments",
                "api-7",
                "app",
                "registry.example.com/other/api:1",
            ),
            containerd("payments", "api-7", "app", "docker.io/library/busybox:1"),
            crio("payments-dev", "api-7", "app", img),
        ] {
            assert!(!when_matches(&w, &a), "{a:?}");
        }
        let w = when(
            r#"pod = "api-*"
               container = "app"
               pod_annotations = { team = "payments-*" }"#,
        );
        assert!(when_matches(&w, &crio("x", "api-7", "app", img)));
        assert!(!when_matches(&w, &crio("x", "web-7", "app", img)));
        assert!(!when_matches(&w, &crio("x", "api-7", "sidecar", img)));
        // containerd passed no `team` annotation through.
        assert!(!when_matches(&w, &containerd("x", "api-7", "app", img)));
    }

    #[test]
    fn pod_conditions_never_match_outside_a_pod_in_a_sandbox_or_on_conflict() {
        let w = when(r#"namespace = "*""#);
        assert!(!when_matches(&w, &ann(&[("io.privy.vault", "x")])));
        assert!(!when_matches(
            &w,
            &ann(&[(CONTAINERD_TYPE, "sandbox"), (CONTAINERD_NAMESPACE, "n")])
        ));
        let mut a = crio("n", "p", "c", "i/x");
        a.insert(CONTAINERD_TYPE.into(), "container".into());
        a.insert(CONTAINERD_NAMESPACE.into(), "n".into());
        assert!(!when_matches(&w, &a));
        // A missing field fails its condition; an absent condition passes.
        let mut a = containerd("n", "p", "c", "i/x");
        a.remove(CONTAINERD_NAMESPACE);
        assert!(!when_matches(&w, &a));
        assert!(when_matches(&when(r#"pod = "p""#), &a));
        // No pod condition: everything, pods or not, as before.
        assert!(when_matches(&When::default(), &ann(&[])));
    }

    fn plan_names(cfg: &str, annotations: BTreeMap<String, String>) -> Vec<String> {
        let cfg = crate::config::Config::parse(cfg, std::path::Path::new("t.toml")).unwrap();
        let state = crate::oci::State {
            id: "c".into(),
            pid: Some(1),
            bundle: "/b".into(),
            annotations,
        };
        let spec: crate::oci::Spec = serde_json::from_str(r#"{"root":{"path":"r"}}"#).unwrap();
        let req = crate::pipeline::request::Request::from_oci(state, spec).unwrap();
        plan(&cfg, &req).into_iter().map(|p| p.name).collect()
    }

    #[test]
    fn sandbox_container_gets_no_source_not_even_an_upload_for_its_ticket() {
        let cfg = "[[source]]\nname = 'all'\nplugin = 'host-dir'\n\
                   [[source]]\nname = 'vault'\nplugin = 'host-dir'\nwhen = { annotation = 'io.privy.vault' }\n";
        let pod = |ty: &str, key: &str| {
            ann(&[
                (key, ty),
                ("io.privy.vault", "payments/db"),
                ("io.privy.ticket", "pvt_x"),
            ])
        };
        for key in [CONTAINERD_TYPE, CRIO_TYPE] {
            assert!(plan_names(cfg, pod("sandbox", key)).is_empty(), "{key}");
            assert_eq!(
                plan_names(cfg, pod("container", key)),
                vec!["all", "vault", "upload"],
                "{key}"
            );
        }
    }

    #[test]
    fn plan_scopes_a_source_to_a_namespace_and_an_image() {
        let cfg = "[[source]]\nname = 'payments'\nplugin = 'host-dir'\n\
                   when = { namespace = 'payments', image = 'registry.example.com/payments/*', annotation = 'io.privy.vault' }\n";
        let img = "registry.example.com/payments/api:1";
        assert_eq!(
            plan_names(cfg, containerd("payments", "p", "c", img)),
            vec!["payments"]
        );
        assert!(plan_names(cfg, containerd("other", "p", "c", img)).is_empty());
        let mut no_ann = containerd("payments", "p", "c", img);
        no_ann.remove("io.privy.vault");
        assert!(plan_names(cfg, no_ann).is_empty());
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

    fn caller(uid: Option<u32>, name: &str, groups: &[&str]) -> Caller {
        Caller::with_names(
            uid,
            (!name.is_empty()).then(|| name.to_owned()),
            groups.iter().map(|g| g.to_string()).collect(),
        )
    }

    #[test]
    fn users_allow_root_alone_by_default_and_exactly_whom_they_name() {
        let root = caller(Some(0), "root", &["root"]);
        let rl = caller(Some(1001), "privy-rl", &["privy-rl", "dev"]);
        let other = caller(Some(1002), "other", &["other"]);
        let unknown = caller(None, "", &[]);
        // Absent: root only.
        assert!(users_allow(None, &root));
        assert!(!users_allow(None, &rl));
        assert!(!users_allow(None, &unknown));
        let by = |us: &[UserMatch], c: &Caller| users_allow(Some(us), c);
        let uid = [UserMatch::Uid(1001)];
        let name = [UserMatch::User("privy-rl".into())];
        let group = [UserMatch::Group("dev".into())];
        for us in [&uid[..], &name, &group] {
            assert!(by(us, &rl), "{us:?}");
            assert!(!by(us, &other), "{us:?}");
            assert!(!by(us, &root), "root only when listed: {us:?}");
            assert!(!by(us, &unknown), "{us:?}");
        }
        assert!(by(&[UserMatch::User("root".into())], &root));
        assert!(by(&[UserMatch::Uid(0), UserMatch::Uid(1001)], &root));
        // A uid that maps nowhere matches no `Uid(0)` by accident.
        assert!(!by(&[UserMatch::Uid(0)], &unknown));
        assert!(!by(&[], &rl));
    }

    #[test]
    fn a_rootless_caller_gets_only_sources_that_name_it_and_its_uploads_always() {
        let c = cfg(r#"
            [[source]]
            name = "everyone-root"
            plugin = "host-dir"
            [[source]]
            name = "for-rl"
            plugin = "host-dir"
            when = { users = ["privy-rl"] }
            [[source]]
            name = "for-dev"
            plugin = "host-dir"
            when = { users = ["group:dev", "root"], stage = "run" }
            [[source]]
            name = "up"
            plugin = "upload"
        "#);
        let mut r = req(r#"{"io.privy.ticket":"pvt_x"}"#);
        let mut names = |who: Caller| {
            r.caller = who;
            plan(&c, &r).into_iter().map(|p| p.name).collect::<Vec<_>>()
        };
        assert_eq!(
            names(caller(Some(0), "root", &["root"])),
            vec!["everyone-root", "for-dev", "up"]
        );
        assert_eq!(
            names(caller(Some(1001), "privy-rl", &["privy-rl"])),
            vec!["for-rl", "up"]
        );
        assert_eq!(
            names(caller(Some(1002), "eve", &["dev"])),
            vec!["for-dev", "up"]
        );
        assert_eq!(names(caller(None, "", &[])), vec!["up"]);
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
