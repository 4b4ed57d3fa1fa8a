//! The embedded `vault` source against a real OpenBao dev server (plain
//! and `-dev-tls`): through the plugin host, then in real runc and podman
//! containers. Every failure is one line naming the source and the cause,
//! and neither the token nor a value shows up anywhere (L6, L7).

mod containers;
mod plugin;

use crate::bao::{bao_ready, Bao};
use crate::network::Canned;
use crate::util::{self, sha256_hex, text, Bundle, World};
use privy::config::{Grant, Limits};
use privy::plan::PluginRef;
use privy::plugin::{Plugin, PluginError, PluginRequest, RawFile};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Every tracing event of this test process, at trace level, as text: the
/// in-process host logs here what the hook would log to its file.
fn traced() -> &'static std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    use std::sync::{Arc, Mutex};
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        struct W(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Arc::new(Mutex::new(Vec::new()));
        let w = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_writer(move || W(w.clone()))
            .try_init();
        buf
    })
}

/// Neither the token nor any value in any trace-level log line so far,
/// and the log is really on: it shows this test's exchanges.
fn assert_not_traced(b: &Bao, values: &[&[u8]]) {
    let log = traced().lock().unwrap();
    assert!(
        util::contains(&log, format!("127.0.0.1:{}", b.port).as_bytes()),
        "the trace log shows no exchange with this server"
    );
    assert!(
        !util::contains(&log, b.token.as_bytes()),
        "the token is in a log line"
    );
    for v in values {
        assert!(!util::contains(&log, v), "a value is in a log line");
    }
}

fn vault() -> &'static Plugin {
    static P: OnceLock<Plugin> = OnceLock::new();
    P.get_or_init(|| {
        util::plugin_host()
            .load(&PluginRef::Embedded("vault".into()))
            .unwrap()
    })
}

/// A vault source for `b`, allowed `allow`.
#[derive(Clone)]
pub(crate) struct Src {
    grant: Grant,
    config: BTreeMap<String, String>,
}

impl Src {
    pub(crate) fn new(b: &Bao, allow: &str) -> Src {
        let mut grant = Grant {
            hosts: vec![b.host().parse().unwrap()],
            files: vec![b.token_file()],
            ..Grant::default()
        };
        let mut config: BTreeMap<String, String> = [
            ("address", b.address()),
            ("token_file", b.token_file().display().to_string()),
            ("allow", allow.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if b.tls {
            grant.files.push(b.ca_file());
            config.insert("ca_file".into(), b.ca_file().display().to_string());
        }
        Src { grant, config }
    }

    /// A source against a canned server on loopback, with the token
    /// `t0ken` in `tok` (granted), allowing every path.
    fn against(s: &Canned, tok: &tempfile::NamedTempFile) -> Src {
        std::fs::write(tok.path(), "t0ken").unwrap();
        Src {
            grant: Grant {
                hosts: vec![s.host().parse().unwrap()],
                files: vec![tok.path().to_owned()],
                ..Grant::default()
            },
            config: [
                ("address", format!("http://{}", s.host())),
                ("token_file", tok.path().display().to_string()),
                ("allow", "*".into()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        }
    }

    fn set(mut self, k: &str, v: &str) -> Src {
        self.config.insert(k.into(), v.into());
        self
    }

    fn fetch(&self, annotation: &str) -> Result<BTreeMap<String, Vec<u8>>, PluginError> {
        traced();
        self.fetch_with(annotation, &Limits::default())
    }

    fn fetch_with(
        &self,
        annotation: &str,
        limits: &Limits,
    ) -> Result<BTreeMap<String, Vec<u8>>, PluginError> {
        let files: Vec<RawFile> = self.fetch_output(annotation, limits)?.files;
        Ok(files
            .into_iter()
            .map(|f| (f.path, f.data.expose().to_vec()))
            .collect())
    }

    /// All one fetch gives: the files and when the source says they expire.
    fn fetch_output(
        &self,
        annotation: &str,
        limits: &Limits,
    ) -> Result<privy::plugin::Output, PluginError> {
        traced();
        let mut req = PluginRequest::bare("c", privy::request::Stage::Run);
        req.annotations
            .insert("io.privy.vault".into(), annotation.into());
        let call = privy::plugin::Call {
            source: "vault",
            grant: &self.grant,
            config: &self.config,
            limits,
            request: &req,
            daemon: None,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(util::plugin_host().fetch(vault(), call))
    }

    /// The TOML of this source for a World, for containers annotated
    /// `io.privy.vault`.
    fn toml(&self, required: bool) -> String {
        self.toml_when(required, "when = { annotation = \"io.privy.vault\" }\n")
    }

    /// `when` is TOML lines of the source's own table (a `when`, a `refresh`).
    pub(crate) fn toml_when(&self, required: bool, when: &str) -> String {
        let config: Vec<String> = self
            .config
            .iter()
            .map(|(k, v)| format!("{k} = {v:?}"))
            .collect();
        format!(
            "[[source]]\nname = \"vault\"\nplugin = \"vault\"\nrequired = {required}\n{when}\
             [source.grant]\nhosts = {:?}\nfiles = {:?}\n[source.config]\n{}\n",
            self.grant.hosts,
            self.grant.files,
            config.join("\n")
        )
    }
}

/// The error of a fetch that must fail: one line, with neither the token
/// nor any of `values` in it.
fn one_line_error(
    r: Result<BTreeMap<String, Vec<u8>>, PluginError>,
    b: &Bao,
    values: &[&[u8]],
) -> String {
    let e = format!("source \"vault\": {}", r.expect_err("fetch must fail"));
    assert!(!e.contains('\n'), "{e}");
    assert!(!e.contains(&b.token), "the token is in the error");
    for v in values {
        assert!(!util::contains(e.as_bytes(), v), "a value is in the error");
    }
    e
}

// ---- end to end: real containers ---------------------------------------

/// A runc bundle annotated for the vault source, running `script`.
fn vault_bundle(w: &World, annotation: &str, script: &str, trace: bool) -> Bundle {
    let b = Bundle::new(script);
    b.edit(|v| {
        v["annotations"] = serde_json::json!({ "io.privy.vault": annotation });
    });
    b.install(w);
    if trace {
        b.edit(|v| {
            for stage in ["createRuntime", "poststop"] {
                for h in v["hooks"][stage].as_array_mut().unwrap() {
                    h["env"] = serde_json::json!(["PRIVY_LOG=trace", "RUST_LOG=trace"]);
                }
            }
        });
    }
    b
}

/// Neither the token nor any value anywhere: output, log, state, bundle.
fn assert_nowhere(w: &World, b: &Bundle, out: &std::process::Output, needles: &[&[u8]]) {
    util::assert_no_trace(w, b, &[out], needles);
}

// ---- podman ------------------------------------------------------------

fn podman_image() -> &'static str {
    util::busybox_image()
}
