//! The embedded `vault` source against a real OpenBao dev server (plain
//! and `-dev-tls`): through the plugin host, then in real runc and podman
//! containers. Every failure is one line naming the source and the cause,
//! and neither the token nor a value shows up anywhere (L6, L7).

use crate::bao::{bao_ready, Bao};
use crate::network::Canned;
use crate::util::{self, text, Bundle, World};
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
struct Src {
    grant: Grant,
    config: BTreeMap<String, String>,
}

impl Src {
    fn new(b: &Bao, allow: &str) -> Src {
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
        let files: Vec<RawFile> = rt.block_on(util::plugin_host().fetch(vault(), call))?;
        Ok(files
            .into_iter()
            .map(|f| (f.path, f.data.expose().to_vec()))
            .collect())
    }

    /// The TOML of this source for a World, for containers annotated
    /// `io.privy.vault`.
    fn toml(&self, required: bool) -> String {
        self.toml_when(required, "when = { annotation = \"io.privy.vault\" }\n")
    }

    fn toml_when(&self, required: bool, when: &str) -> String {
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

#[test]
fn kv2_keys_become_files_with_the_right_bytes_and_versions_pin() {
    if !bao_ready() {
        return;
    }
    let b = Bao::start();
    let (k1, t1) = (util::secret("key-v1"), util::secret("tok-v1"));
    b.put(
        "secret",
        "ci/deploy-key",
        &[("id_ed25519", &k1), ("token", &t1)],
    );
    let src = Src::new(&b, "ci/*,deploy/**");
    let got = src.fetch("ci/deploy-key").unwrap();
    assert_eq!(got.len(), 2, "{:?}", got.keys());
    assert_eq!(got["ci/deploy-key/id_ed25519"], k1);
    assert_eq!(got["ci/deploy-key/token"], t1);

    // Rotation: the next fetch reads the current version; nothing is cached.
    let (k2, t2) = (util::secret("key-v2"), util::secret("tok-v2"));
    b.put(
        "secret",
        "ci/deploy-key",
        &[("id_ed25519", &k2), ("token", &t2)],
    );
    let got = src.fetch("ci/deploy-key").unwrap();
    assert_eq!(got["ci/deploy-key/id_ed25519"], k2);
    // A pin reads the old version; `#key` narrows to one key.
    let got = src.fetch("ci/deploy-key@1#token").unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got["ci/deploy-key/token"], t1);

    // Two paths at once, one of them deeper, allowed by `**`.
    let d = util::secret("deep");
    b.put("secret", "deploy/prod/eu", &[("cert.pem", &d)]);
    let got = src.fetch("ci/deploy-key#token, deploy/prod/eu").unwrap();
    assert_eq!(got["deploy/prod/eu/cert.pem"], d);
    assert_eq!(got["ci/deploy-key/token"], t2);
    assert_not_traced(&b, &[&k1, &t1, &k2, &t2, &d]);
}

#[test]
fn kv1_mount_reads_and_refuses_a_version_pin() {
    if !bao_ready() {
        return;
    }
    let b = Bao::start();
    b.run(&["secrets", "enable", "-path=kv1", "-version=1", "kv"]);
    let v = util::secret("kv1");
    b.put("kv1", "app/db", &[("password", &v)]);
    let src = Src::new(&b, "app/*")
        .set("mount", "kv1")
        .set("kv_version", "1");
    assert_eq!(src.fetch("app/db").unwrap()["app/db/password"], v);
    let e = one_line_error(src.fetch("app/db@2"), &b, &[&v]);
    assert!(
        e.contains("denied") && e.contains("needs a KV v2 mount"),
        "{e}"
    );
    assert_not_traced(&b, &[&v]);
}

#[test]
fn approle_login_reads_and_gives_its_token_back() {
    if !bao_ready() {
        return;
    }
    let b = Bao::start();
    let v = util::secret("approle");
    b.put("secret", "ci/app", &[("key", &v)]);
    b.run(&["auth", "enable", "approle"]);
    let policy = b.path().join("ci.hcl");
    std::fs::write(
        &policy,
        "path \"secret/data/ci/*\" { capabilities = [\"read\"] }\n",
    )
    .unwrap();
    b.run(&["policy", "write", "ci-read", policy.to_str().unwrap()]);
    b.run(&["write", "auth/approle/role/ci", "token_policies=ci-read"]);
    let role_id = b.run(&["read", "-field=role_id", "auth/approle/role/ci/role-id"]);
    let secret_id = b.run(&[
        "write",
        "-f",
        "-field=secret_id",
        "auth/approle/role/ci/secret-id",
    ]);
    let sid_file = b.path().join("secret-id");
    std::fs::write(&sid_file, secret_id.trim()).unwrap();
    let mut src = Src::new(&b, "ci/*")
        .set("role_id", role_id.trim())
        .set("secret_id_file", sid_file.to_str().unwrap());
    src.config.remove("token_file");
    src.grant.files = vec![sid_file.clone()];
    let accessors = || {
        b.run(&["list", "-format=json", "auth/token/accessors"])
            .matches(',')
            .count()
    };
    let before = accessors();
    assert_eq!(src.fetch("ci/app").unwrap()["ci/app/key"], v);
    assert_eq!(accessors(), before, "the AppRole token was not revoked");

    // A wrong secret id is refused, and the policy still limits the paths.
    std::fs::write(&sid_file, "not-the-secret-id").unwrap();
    let e = one_line_error(src.fetch("ci/app"), &b, &[&v]);
    assert!(
        e.contains("denied: POST auth/approle/login: login refused"),
        "{e}"
    );
    std::fs::write(&sid_file, secret_id.trim()).unwrap();
    b.put("secret", "other/x", &[("k", b"v")]);
    let e = one_line_error(src.set("allow", "ci/*,other/*").fetch("other/x"), &b, &[&v]);
    assert!(e.contains("permission denied (403)"), "{e}");
}

#[test]
fn each_failure_is_one_clear_line_without_token_or_values() {
    if !bao_ready() {
        return;
    }
    let b = Bao::start();
    let v = util::secret("fail");
    b.put("secret", "ci/deploy-key", &[("id", &v)]);
    let src = Src::new(&b, "ci/*");
    let cases: &[(&str, &str)] = &[
        (
            "other/x",
            "denied: path other/x is not allowed (allow: ci/*)",
        ),
        (
            "ci/../other/x",
            "denied: annotation io.privy.vault: \"ci/../other/x\" is not path",
        ),
        ("ci/a/b", "denied: path ci/a/b is not allowed"),
        (
            "ci/missing",
            "not found: GET secret/data/ci/missing: no such secret (404)",
        ),
        (
            "ci/deploy-key#nope",
            "not found: secret ci/deploy-key has no key nope",
        ),
        (
            "ci/deploy-key@9",
            "not found: GET secret/data/ci/deploy-key?version=9",
        ),
        ("", "denied: annotation io.privy.vault is empty"),
        (" , ", "denied: annotation io.privy.vault is empty"),
    ];
    for (ann, want) in cases {
        let e = one_line_error(src.fetch(ann), &b, &[&v]);
        assert!(e.contains(want), "{ann:?}: {e}");
    }
    // 403: a token whose policy does not cover the path.
    let weak = b.run(&["token", "create", "-policy=default", "-field=token"]);
    let weak_file = b.path().join("weak");
    std::fs::write(&weak_file, weak.trim()).unwrap();
    let mut w = Src::new(&b, "ci/*").set("token_file", weak_file.to_str().unwrap());
    w.grant.files = vec![weak_file];
    let e = one_line_error(w.fetch("ci/deploy-key"), &b, &[&v, weak.trim().as_bytes()]);
    assert!(
        e.contains("denied: GET secret/data/ci/deploy-key: permission denied (403)"),
        "{e}"
    );
    // A token file outside grant.files is a config error, and it is not read.
    let mut nogrant = Src::new(&b, "ci/*");
    nogrant.grant.files.clear();
    let e = one_line_error(nogrant.fetch("ci/deploy-key"), &b, &[&v]);
    assert!(
        e.contains("invalid config: config key `token_file`") && e.contains("not in grant.files"),
        "{e}"
    );
    // No `allow`: nothing is allowed.
    let mut noallow = Src::new(&b, "x");
    noallow.config.remove("allow");
    let e = one_line_error(noallow.fetch("ci/deploy-key"), &b, &[&v]);
    assert!(
        e.contains("invalid config: config key `allow` is required"),
        "{e}"
    );
    assert_not_traced(&b, &[&v]);
}

#[test]
fn a_malformed_server_answer_is_one_clear_line() {
    // A server that speaks HTTP but not Vault's JSON.
    for (body, want) in [
        (&b"<html>oops</html>"[..], "malformed response: not JSON"),
        (
            &br#"{"data":{"nodata":1}}"#[..],
            "malformed response: no data.data object",
        ),
    ] {
        let s = Canned::ok(body);
        let tok = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tok.path(), "t0ken").unwrap();
        let src = Src {
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
        };
        let e = src.fetch("x").unwrap_err().to_string();
        assert!(e.contains(want) && !e.contains("t0ken"), "{e}");
    }
    // Not HTTP at all.
    let s = Canned::new(b"SSH-2.0-OpenSSH_9.2\r\n".to_vec());
    let tok = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tok.path(), "t0ken").unwrap();
    let src = Src {
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
    };
    let e = src.fetch("x").unwrap_err().to_string();
    assert!(
        e.contains("malformed response") && e.contains("not valid HTTP"),
        "{e}"
    );
}

#[test]
fn server_stopped_fails_fast_naming_the_address() {
    if !bao_ready() {
        return;
    }
    let mut b = Bao::start();
    let v = util::secret("down");
    b.put("secret", "ci/k", &[("k", &v)]);
    let src = Src::new(&b, "ci/*");
    src.fetch("ci/k").unwrap();
    b.stop();
    let limits = Limits {
        plugin_timeout_ms: 2000,
        ..Limits::default()
    };
    let start = Instant::now();
    let e = one_line_error(src.fetch_with("ci/k", &limits), &b, &[&v]);
    assert!(start.elapsed() < Duration::from_millis(2000));
    assert!(
        e.contains(&format!(
            "source \"vault\": unavailable: GET secret/data/ci/k: {}: connect",
            b.host()
        )),
        "{e}"
    );
    assert_not_traced(&b, &[&v]);
}

#[test]
fn tls_against_dev_tls_with_its_granted_ca_file() {
    if !bao_ready() {
        return;
    }
    let b = Bao::start_tls();
    let v = util::secret("tls");
    b.put("secret", "ci/tls", &[("cert.pem", &v)]);
    let src = Src::new(&b, "ci/*");
    assert!(src.config["address"].starts_with("https://"));
    assert_eq!(src.fetch("ci/tls").unwrap()["ci/tls/cert.pem"], v);
    // The CA file must itself be granted.
    let mut ungranted = Src::new(&b, "ci/*");
    ungranted.grant.files.retain(|f| *f != b.ca_file());
    let e = one_line_error(ungranted.fetch("ci/tls"), &b, &[&v]);
    assert!(
        e.contains("denied") && e.contains("is not in grant.files"),
        "{e}"
    );
    // Without it, the system's CAs do not vouch for the dev server.
    let mut system = Src::new(&b, "ci/*");
    system.config.remove("ca_file");
    let e = one_line_error(system.fetch("ci/tls"), &b, &[&v]);
    assert!(
        e.contains("unavailable") && e.contains("TLS: invalid peer certificate"),
        "{e}"
    );
    assert_not_traced(&b, &[&v]);
}

// ---- end to end: real containers ---------------------------------------

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

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
    for n in needles {
        assert!(
            !util::contains(&out.stdout, n),
            "a secret is in the container's stdout"
        );
        assert!(!util::contains(&out.stderr, n), "a secret is in stderr");
        assert!(!util::contains(&w.log(), n), "a secret is in privy's log");
        assert!(
            util::files_containing(w.dir.path(), n).is_empty(),
            "a secret is in privy's files"
        );
        assert!(
            util::files_containing(b.path(), n).is_empty(),
            "a secret is in the bundle"
        );
    }
}

#[test]
fn runc_container_reads_kv2_keys_sees_rotation_and_fails_closed() {
    if !util::e2e_ready("runc") || !bao_ready() {
        return;
    }
    let mut b = Bao::start();
    let (k1, t1) = (util::secret("e2e-key"), util::secret("e2e-tok"));
    b.put(
        "secret",
        "ci/deploy-key",
        &[("id_ed25519", &k1), ("token", &t1)],
    );
    let src = Src::new(&b, "ci/*");
    let w = World::new("[limits]\nplugin_timeout_ms = 3000\n", &src.toml(true));
    let script =
        "sha256sum /run/private/ci/deploy-key/id_ed25519 /run/private/ci/deploy-key/token; \
                  stat -c '%n %a' /run/private/ci/deploy-key/token";

    // Under trace logging: the right bytes, and no token or value in any log.
    let c = vault_bundle(&w, "ci/deploy-key", script, true);
    let started = Instant::now();
    let out = c.run("runc");
    let first = started.elapsed();
    let so = text(&out.stdout);
    assert!(out.status.success(), "runc: {}", text(&out.stderr));
    assert!(
        so.contains(&format!(
            "{}  /run/private/ci/deploy-key/id_ed25519",
            sha256_hex(&k1)
        )),
        "{so}"
    );
    assert!(
        so.contains(&format!(
            "{}  /run/private/ci/deploy-key/token",
            sha256_hex(&t1)
        )),
        "{so}"
    );
    assert!(so.contains("/run/private/ci/deploy-key/token 400"), "{so}");
    let log = text(&w.log());
    assert!(
        log.contains("plugin http exchange") && log.contains("injected"),
        "trace log lacks the exchange: {log}"
    );
    assert_nowhere(&w, &c, &out, &[b.token.as_bytes(), &k1, &t1]);

    // Rotation: version 2 in the store is what the next container gets.
    let k2 = util::secret("e2e-key2");
    b.put(
        "secret",
        "ci/deploy-key",
        &[("id_ed25519", &k2), ("token", &t1)],
    );
    let c = vault_bundle(&w, "ci/deploy-key", script, false);
    let out = c.run("runc");
    assert!(out.status.success(), "runc: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&sha256_hex(&k2)));
    assert!(!text(&out.stdout).contains(&sha256_hex(&k1)));

    // A path outside `allow`: the container does not start.
    let c = vault_bundle(&w, "admin/root-ca", "echo STARTED", false);
    let out = c.run("runc");
    let err = text(&out.stderr).replace("\\\"", "\"");
    assert!(!out.status.success() && !text(&out.stdout).contains("STARTED"));
    assert!(
        err.contains("source \"vault\": denied: path admin/root-ca is not allowed"),
        "{err}"
    );

    // Server down: the start fails, within the timeout, naming the source and address.
    b.stop();
    let c = vault_bundle(&w, "ci/deploy-key", "echo STARTED", false);
    let started = Instant::now();
    let out = c.run("runc");
    let took = started.elapsed();
    let err = text(&out.stderr).replace("\\\"", "\"");
    assert!(!out.status.success() && !text(&out.stdout).contains("STARTED"));
    assert!(
        err.contains(&format!(
            "source \"vault\": unavailable: GET secret/data/ci/deploy-key: {}",
            b.host()
        )),
        "{err}"
    );
    assert!(took < Duration::from_secs(3) + first, "took {took:?}");
    assert_nowhere(&w, &c, &out, &[b.token.as_bytes(), &k1, &k2, &t1]);
}

#[test]
fn runc_container_reads_kv2_keys_over_tls() {
    if !util::e2e_ready("runc") || !bao_ready() {
        return;
    }
    let b = Bao::start_tls();
    let v = util::secret("e2e-tls");
    b.put("secret", "ci/tls", &[("client.pem", &v)]);
    let w = World::new("", &Src::new(&b, "ci/*").toml(true));
    let c = vault_bundle(
        &w,
        "ci/tls",
        "sha256sum /run/private/ci/tls/client.pem",
        false,
    );
    let out = c.run("runc");
    assert!(out.status.success(), "runc: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&sha256_hex(&v)));
    assert_nowhere(&w, &c, &out, &[b.token.as_bytes(), &v]);
}

#[test]
fn optional_vault_source_that_is_down_is_skipped() {
    if !util::e2e_ready("runc") || !bao_ready() {
        return;
    }
    let mut b = Bao::start();
    let src = Src::new(&b, "ci/*");
    b.stop();
    let w = World::new("", &src.toml(false));
    let c = vault_bundle(&w, "ci/x", "echo STARTED", false);
    let out = c.run("runc");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("STARTED"));
    let log = text(&w.log());
    assert!(
        log.contains("optional source failed") && log.contains(&b.host()),
        "{log}"
    );
}

// ---- podman ------------------------------------------------------------

fn podman_image() -> &'static str {
    util::busybox_image()
}

#[test]
fn podman_container_reads_kv2_keys_through_hooks_d() {
    if !util::e2e_ready("podman") || !bao_ready() {
        return;
    }
    let b = Bao::start();
    let v = util::secret("podman");
    b.put("secret", "ci/podman", &[("api.key", &v)]);
    let w = World::new("", &Src::new(&b, "ci/*").toml(true));
    let hooks = w.dir.path().join("hooks.d");
    let out = w.privy(&["install", "--hooks-dir", hooks.to_str().unwrap()]);
    assert!(out.status.success(), "install: {}", text(&out.stderr));
    let image = podman_image();
    let run = |annotation: &str| {
        std::process::Command::new("timeout")
            .args(["120", "podman", "--hooks-dir"])
            .arg(&hooks)
            .args(["run", "--rm", "--network", "none", "--annotation"])
            .arg(format!("io.privy.vault={annotation}"))
            .args([
                image,
                "sh",
                "-c",
                "sha256sum /run/private/ci/podman/api.key && echo STARTED",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let out = run("ci/podman");
    assert!(out.status.success(), "podman: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!(
            "{}  /run/private/ci/podman/api.key",
            sha256_hex(&v)
        )),
        "{}",
        text(&out.stdout)
    );
    assert!(!util::contains(&out.stdout, &v) && !util::contains(&out.stderr, &v));
    assert!(!util::contains(&w.log(), &v) && !util::contains(&w.log(), b.token.as_bytes()));
    // Outside `allow`: podman does not start it, and says why.
    let out = run("admin/x");
    assert!(!out.status.success() && !text(&out.stdout).contains("STARTED"));
    // podman on crun drops a hook's stderr; privy's log always has the line.
    let said = (text(&out.stderr) + &text(&w.log())).replace("\\\"", "\"");
    assert!(
        said.contains("source \"vault\": denied: path admin/x is not allowed"),
        "{said}"
    );
}

#[test]
fn podman_build_run_step_reads_a_secret_and_the_image_keeps_no_trace() {
    if !util::e2e_ready("podman") || !bao_ready() {
        return;
    }
    let b = Bao::start();
    let v = util::secret("build");
    b.put("secret", "ci/build", &[("token", &v)]);
    // A build step carries no annotation: the operator's `paths` names
    // what build steps get, still under `allow`. (`podman build` takes
    // `--hooks-dir` after `build`; the global flag does not reach buildah.)
    let src = Src::new(&b, "ci/*").set("paths", "ci/build");
    let w = World::new("", &src.toml_when(true, ""));
    let hooks = w.dir.path().join("hooks.d");
    let out = w.privy(&["install", "--hooks-dir", hooks.to_str().unwrap()]);
    assert!(out.status.success(), "install: {}", text(&out.stderr));
    let ctx = w.dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        format!(
            "FROM {}\nRUN sha256sum /run/private/ci/build/token && echo BUILD-STEP-DONE\n",
            podman_image()
        ),
    )
    .unwrap();
    let tag = format!("localhost/{}:latest", util::unique_id("vault-build"));
    let out = std::process::Command::new("timeout")
        .args(["300", "podman", "build", "--hooks-dir"])
        .arg(&hooks)
        .args(["--no-cache", "-t", &tag])
        .arg(&ctx)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(
        out.status.success(),
        "podman build: {all}\nlog: {}",
        text(&w.log())
    );
    assert!(
        all.contains(&format!("{}  /run/private/ci/build/token", sha256_hex(&v))),
        "{all}"
    );
    assert!(!util::contains(all.as_bytes(), &v));
    // The image holds neither the bytes nor the token.
    let tar = w.dir.path().join("image.tar");
    let saved = std::process::Command::new("podman")
        .args(["save", "-o"])
        .arg(&tar)
        .arg(&tag)
        .output()
        .unwrap();
    let _ = std::process::Command::new("podman")
        .args(["rmi", "-f", &tag])
        .output();
    assert!(
        saved.status.success(),
        "podman save: {}",
        text(&saved.stderr)
    );
    let image = std::fs::read(&tar).unwrap();
    let _ = std::fs::remove_file(&tar);
    assert!(
        !util::contains(&image, &v),
        "the secret is in the built image"
    );
    assert!(
        !util::contains(&image, b.token.as_bytes()),
        "the token is in the built image"
    );
    assert!(!util::contains(&w.log(), &v) && !util::contains(&w.log(), b.token.as_bytes()));
}

#[test]
fn plugin_run_with_grant_host_fetches_and_shows_no_value() {
    if !bao_ready() {
        return;
    }
    let b = Bao::start();
    let v = util::secret("cli");
    b.put("secret", "ci/cli", &[("api.key", &v)]);
    let w = World::new("", "");
    let wasm = util::guest("vault");
    let token = b.token_file();
    let run = |grant_host: &str| {
        w.privy(&[
            "plugin",
            "run",
            wasm.to_str().unwrap(),
            "--grant-host",
            grant_host,
            "--grant-file",
            token.to_str().unwrap(),
            "-c",
            &format!("address={}", b.address()),
            "-c",
            &format!("token_file={}", token.display()),
            "-c",
            "allow=ci/*",
            "--annotation",
            "io.privy.vault=ci/cli",
        ])
    };
    let out = run(&b.host());
    let so = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        so.contains(&format!("{}  hmac-sha256:", v.len())) && so.contains("ci/cli/api.key"),
        "{so}"
    );
    // Another port of the same host is another grant.
    let out = run(&format!("127.0.0.1:{}", b.port + 1));
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("source \"vault\": denied") && err.contains("is not in grant.hosts"),
        "{err}"
    );
    for o in [&out.stdout, &out.stderr] {
        assert!(!util::contains(o, &v) && !util::contains(o, b.token.as_bytes()));
    }
}
