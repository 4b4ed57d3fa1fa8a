//! The vault source under runc, podman and a podman build RUN step.

use super::*;

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
