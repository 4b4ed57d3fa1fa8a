//! Uploads into runc and crun bundles (`privy run --bundle`).

use super::*;
on_both_runtimes!(bundle_gets_uploads_and_an_upload_beats_host_dir);

fn bundle_gets_uploads_and_an_upload_beats_host_dir(rt: &str) {
    let st = Setup::new("");
    let _d = st.daemon();
    let host = util::secret("host");
    let up = util::secret("upload");
    let other = util::secret("other");
    st.w.put("api.key", &host, 0o644);
    let src = st.user_file("api.key", &up, 0o600);
    let src2 = st.user_file("other", &other, 0o640);
    let b = Bundle::new(
        "sha256sum /run/private/api.key /run/private/deep/other; stat -c '%a %n' /run/private/api.key /run/private/deep/other",
    );
    let out = st.privy(&[
        "run".into(),
        "--private".into(),
        format!("{}:api.key", src.display()),
        "-p".into(),
        format!("{}:deep/other", src2.display()),
        "--bundle".into(),
        b.path().display().to_string(),
        "--".into(),
        rt.into(),
        "run".into(),
        "-b".into(),
        b.path().display().to_string(),
        b.id.clone(),
    ]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "privy run failed: {}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains(&sha256_hex(&up)),
        "upload not seen: {stdout}"
    );
    assert!(stdout.contains(&sha256_hex(&other)));
    assert!(
        !stdout.contains(&sha256_hex(&host)),
        "host-dir file must lose to the upload"
    );
    assert!(stdout.contains("600 /run/private/api.key"), "{stdout}");
    assert!(stdout.contains("600 /run/private/deep/other"), "{stdout}");
    // The override is audited by name, never by value.
    let log = st.w.log();
    let log_text = text(&log);
    assert!(log_text.contains("api.key"), "audit names the file");
    assert!(
        log_text.contains("override"),
        "audit records the override: {log_text}"
    );
    for secret in [&host, &up, &other] {
        assert!(!util::contains(&log, secret));
        assert!(util::files_containing(b.path(), secret).is_empty());
    }
    // privy run restored the bundle and dropped the ticket: the container is gone.
    let cfg = std::fs::read_to_string(b.path().join("config.json")).unwrap();
    assert!(!cfg.contains("io.privy.ticket"));
}
