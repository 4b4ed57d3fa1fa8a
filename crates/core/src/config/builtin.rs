//! The catalog of built-in source plugins, as their own manifests describe
//! them: `plugins/<name>/builtin.toml` for every plugin shipped inside the
//! binary. This is all the core knows about them: their names, their
//! precedence, the annotations they read, the checks their config must
//! pass at `privy config check`, and whether one serves tickets for every
//! container that carries one. No Rust code names a plugin; adding a
//! built-in plugin is a crate and its manifest in `plugins/`.
//!
//! A manifest:
//!
//! ```toml
//! name = "vault"               # what `plugin = "vault"` refers to
//! precedence = "operator"      # host-dir | operator | user-reference | upload
//! annotations = ["io.privy.vault"]   # container-facing names it reads
//! claims_tickets = false       # true: runs for every request with io.privy.ticket
//!
//! [[config]]                   # checks on [source.config], in this order
//! key = "address"
//! required = true              # missing: "required by the vault plugin"
//! url_in_grant_hosts = true    # an http(s) URL whose host:port is in grant.hosts
//! default = "only-grant-dir"   # absent, and exactly one grant.dirs entry: that one
//! in_grant_files = true        # a path listed in grant.files
//! inside_grant_dirs = true     # a path under one of grant.dirs
//! ```
//!
//! The rules talk about grants, never about a plugin, and their messages
//! are the ones the config has always given. The manifests are compiled in
//! (the build lists them) and parsed on first use; a unit test parses them
//! all, so a malformed one fails the build's tests, never a container start.

use super::file::SourceFile;
use super::{invalid, ConfigError, Grant, PluginRef, Precedence, SourceConfig, When};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

// `MANIFESTS: &[(&str, &str)]`: (path, text) of every plugins/*/builtin.toml.
include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// One built-in plugin, as its manifest declares it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Builtin {
    /// What `plugin = "..."` in a `[[source]]` refers to.
    pub name: String,
    /// How its files rank against other sources' for the same path.
    pub precedence: Precedence,
    /// The container annotations it reads (shown in docs and listings).
    #[serde(default)]
    pub annotations: Vec<String>,
    /// Runs for every request that carries a ticket (`io.privy.ticket`),
    /// even when no source in the config names it.
    #[serde(default)]
    pub claims_tickets: bool,
    /// Checks on the source's `[source.config]`, in order.
    #[serde(default)]
    config: Vec<Rule>,
}

/// One check on one `[source.config]` key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    key: String,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    default: Option<DefaultValue>,
    #[serde(default)]
    url_in_grant_hosts: bool,
    #[serde(default)]
    in_grant_files: bool,
    #[serde(default)]
    inside_grant_dirs: bool,
}

/// Where a key's value comes from when the config does not give it.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum DefaultValue {
    /// The source's only `grant.dirs` entry, when it has exactly one.
    OnlyGrantDir,
}

/// Every built-in plugin, by name.
#[derive(Debug)]
pub struct Catalog {
    builtins: BTreeMap<String, Builtin>,
}

/// The catalog of the manifests compiled into this binary.
pub fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        Catalog::parse(MANIFESTS).unwrap_or_else(|e| panic!("built-in plugin manifest: {e}"))
    })
}

impl Catalog {
    fn parse(manifests: &[(&str, &str)]) -> Result<Catalog, String> {
        let mut builtins = BTreeMap::new();
        for (path, text) in manifests {
            let b: Builtin = toml::from_str(text).map_err(|e| format!("{path}: {e}"))?;
            if builtins.insert(b.name.clone(), b).is_some() {
                return Err(format!("{path}: a second manifest for the same name"));
            }
        }
        if builtins.values().filter(|b| b.claims_tickets).count() > 1 {
            return Err("more than one built-in plugin claims tickets".into());
        }
        Ok(Catalog { builtins })
    }

    /// The built-in plugin called `name`.
    pub fn get(&self, name: &str) -> Option<&Builtin> {
        self.builtins.get(name)
    }

    /// Every built-in plugin's name, alphabetically.
    pub fn names(&self) -> Vec<&str> {
        self.builtins.keys().map(String::as_str).collect()
    }

    /// The source that serves a ticket for a request that carries one when
    /// the config names no source of that plugin: required, granted the
    /// daemon, named after its plugin.
    pub fn implicit_ticket_source(&self) -> Option<SourceConfig> {
        let b = self.builtins.values().find(|b| b.claims_tickets)?;
        Some(SourceConfig {
            name: b.name.clone(),
            plugin: PluginRef::Embedded(b.name.clone()),
            required: true,
            refresh: None,
            when: Some(When {
                annotation: Some(crate::contract::ANNOTATION_TICKET.into()),
                ..When::default()
            }),
            grant: Grant {
                daemon: true,
                ..Grant::default()
            },
            config: BTreeMap::new(),
        })
    }

    /// Whether sources of `plugin` serve tickets (see [`Builtin::claims_tickets`]).
    pub fn claims_tickets(&self, plugin: &PluginRef) -> bool {
        matches!(plugin, PluginRef::Embedded(n) if self.get(n).is_some_and(|b| b.claims_tickets))
    }
}

impl Builtin {
    /// Fill in the config values this plugin's manifest defaults.
    pub(super) fn fill_defaults(&self, s: &mut SourceFile) {
        for r in &self.config {
            match r.default {
                Some(DefaultValue::OnlyGrantDir)
                    if !s.config.contains_key(&r.key) && s.grant.dirs.len() == 1 =>
                {
                    let dir = s.grant.dirs[0].display().to_string();
                    s.config.insert(r.key.clone(), dir);
                }
                _ => {}
            }
        }
    }

    /// Check `s`'s config against this plugin's rules, in manifest order.
    /// `key` names a key of this source in errors (`source[3].config.x`).
    pub(super) fn check(
        &self,
        s: &SourceFile,
        key: &dyn Fn(&str) -> String,
    ) -> Result<(), ConfigError> {
        for r in &self.config {
            let k = key(&format!("config.{}", r.key));
            let Some(v) = s.config.get(&r.key) else {
                if r.required {
                    return Err(invalid(k, format!("required by the {} plugin", self.name)));
                }
                continue;
            };
            if r.url_in_grant_hosts {
                // `invalid request: ` is what this message has always said
                // (it came from the http import's error type).
                let url = super::grant::parse_url(v.trim())
                    .map_err(|e| invalid(&k, format!("invalid request: {e}")))?;
                let granted = s.grant.hosts.iter().any(|h| {
                    super::grant::parse_grant_host(h)
                        .is_ok_and(|(host, port)| host == url.host && port == url.port)
                });
                if !granted {
                    return Err(invalid(
                        k,
                        format!("{} is not in grant.hosts", url.address()),
                    ));
                }
            }
            if r.in_grant_files && !s.grant.files.iter().any(|g| g.as_os_str() == v.as_str()) {
                return Err(invalid(k, format!("{v:?} is not in grant.files")));
            }
            if r.inside_grant_dirs && !s.grant.dirs.iter().any(|g| Path::new(v).starts_with(g)) {
                return Err(invalid(k, format!("{v:?} is not inside any of grant.dirs")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_manifest_parses_and_names_its_own_folder() {
        assert!(!MANIFESTS.is_empty());
        let c = Catalog::parse(MANIFESTS).unwrap();
        for (path, _) in MANIFESTS {
            let folder = Path::new(path)
                .parent()
                .and_then(|p| p.file_name())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            assert!(c.get(&folder).is_some(), "{path} declares another name");
        }
        assert_eq!(c.names(), ["host-dir", "upload", "vault"]);
    }

    #[test]
    fn one_plugin_serves_tickets_and_runs_required_with_the_daemon() {
        let s = catalog().implicit_ticket_source().unwrap();
        assert_eq!(s.name, "upload");
        assert!(s.required && s.grant.daemon);
        assert!(catalog().claims_tickets(&s.plugin));
        assert_eq!(
            s.when.unwrap().annotation.as_deref(),
            Some(crate::contract::ANNOTATION_TICKET)
        );
    }

    #[test]
    fn a_malformed_manifest_is_refused_with_its_path() {
        let e = Catalog::parse(&[("plugins/x/builtin.toml", "name = 'x'\nprecedence = 'top'\n")])
            .unwrap_err();
        assert!(e.starts_with("plugins/x/builtin.toml: "), "{e}");
        let e = Catalog::parse(&[(
            "plugins/x/builtin.toml",
            "name = 'x'\nprecedence = 'operator'\n[[config]]\nkey='a'\nrequird=true\n",
        )])
        .unwrap_err();
        assert!(e.contains("requird"), "{e}");
    }
}
