//! The vault source in process, against OpenBao dev servers (plain and
//! TLS) and canned servers: KV 1 and 2, AppRole, every failure one line.

use super::*;
use privy::sys::unix_now as now;

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
fn l7_each_failure_is_one_clear_line_without_token_or_values() {
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
        let src = Src::against(&s, &tok);
        let e = src.fetch("x").unwrap_err().to_string();
        assert!(e.contains(want) && !e.contains("t0ken"), "{e}");
    }
    // Not HTTP at all.
    let s = Canned::new(b"SSH-2.0-OpenSSH_9.2\r\n".to_vec());
    let tok = tempfile::NamedTempFile::new().unwrap();
    let src = Src::against(&s, &tok);
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

/// Issue 15's expiry from a real OpenBao: a KV v1 secret's lease (its
/// `ttl`), and a KV v2 secret's `custom_metadata` time named by
/// `expires_key`; the earliest of several secrets; none where the server
/// says none. A value that is not a time is named by key and path, and
/// neither it nor a secret value reaches the log.
#[test]
fn the_vault_source_reports_leases_and_custom_metadata_expiries() {
    if !bao_ready() {
        return;
    }
    let b = Bao::start();
    let opts = Limits::default();
    // KV v1: `lease_duration` is the secret's `ttl`.
    b.run(&["secrets", "enable", "-path=kv1", "-version=1", "kv"]);
    let v = util::secret("leased");
    b.put("kv1", "app/db", &[("password", &v), ("ttl", b"1h")]);
    let kv1 = Src::new(&b, "app/*")
        .set("mount", "kv1")
        .set("kv_version", "1");
    let t = now();
    let out = kv1.fetch_output("app/db", &opts).unwrap();
    let e = out.expires.expect("a lease");
    assert!((t + 3600..=now() + 3600).contains(&e), "{e}");
    let e = kv1.clone().set("expires_key", "not_after").fetch("app/db");
    let e = one_line_error(e, &b, &[&v]);
    assert!(e.contains("invalid config") && e.contains("KV v1"), "{e}");

    // KV v2: no lease; `expires_key` reads custom_metadata.
    let (c1, c2) = (util::secret("cert-1"), util::secret("cert-2"));
    b.put("secret", "ci/cert", &[("cert.pem", &c1)]);
    b.put("secret", "ci/other", &[("cert.pem", &c2)]);
    b.put("secret", "ci/plain", &[("k", b"v")]);
    let soon = now() + 10 * 86_400;
    let later = now() + 20 * 86_400;
    b.run(&[
        "kv",
        "metadata",
        "put",
        "-mount=secret",
        &format!(
            "-custom-metadata=not_after={}",
            privy::logging::rfc3339_seconds(later)
        ),
        "ci/cert",
    ]);
    b.run(&[
        "kv",
        "metadata",
        "put",
        "-mount=secret",
        &format!("-custom-metadata=not_after={soon}"),
        "ci/other",
    ]);
    let kv2 = Src::new(&b, "ci/*");
    assert_eq!(kv2.fetch_output("ci/cert", &opts).unwrap().expires, None);
    let kv2 = kv2.set("expires_key", "not_after");
    let out = kv2.fetch_output("ci/cert", &opts).unwrap();
    assert_eq!(out.expires, Some(later));
    assert_eq!(out.files.len(), 1);
    let out = kv2
        .fetch_output("ci/cert,ci/other,ci/plain", &opts)
        .unwrap();
    assert_eq!((out.files.len(), out.expires), (3, Some(soon)));
    assert_eq!(kv2.fetch_output("ci/plain", &opts).unwrap().expires, None);

    // Not a time: a warning naming the key and the path; no expiry.
    b.run(&[
        "kv",
        "metadata",
        "put",
        "-mount=secret",
        "-custom-metadata=not_after=next-tuesday",
        "ci/plain",
    ]);
    assert_eq!(kv2.fetch_output("ci/plain", &opts).unwrap().expires, None);
    let log = util::text(&traced().lock().unwrap());
    assert!(
        log.contains("secret ci/plain: custom_metadata not_after is not an RFC 3339 time"),
        "{log}"
    );
    assert!(!log.contains("next-tuesday"), "the value is in the log");
    assert_not_traced(&b, &[&v, &c1, &c2]);
}
