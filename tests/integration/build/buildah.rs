//! `buildah bud` with privy's hooks.d, with and without `privy build`.

use super::*;

#[test]
fn plain_buildah_bud_with_privys_hooks_dir_is_a_build_stage_and_leaves_no_trace() {
    if !ready() {
        return;
    }
    let bw = BuildWorld::new(CLEAN);
    let control = control(&bw);
    let hooks = bw.hooks_dir();
    let img = Image::tagged("build");
    // `--annotation` labels the image; it does not reach the RUN step's
    // config.json, so the `annotated` source must not match (this is why
    // `privy build` passes annotations through the hook's env instead).
    let out = Command::new("buildah")
        .args([
            "bud",
            "--no-cache",
            "--annotation",
            "io.privy.stage=build",
            "--hooks-dir",
        ])
        .arg(&hooks)
        .args(["-t", &img.0, bw.ctx()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = text(&bw.w.log());
    assert!(log.contains(r#""stage":"build""#), "{log}");
    assert!(!contains(&bw.w.log(), &bw.secret));
    assert_clean_image(&bw, &img.0, &control);
    assert_eq!(
        listing(&img.0),
        "b\n",
        "a plain build carries no annotation"
    );
}

/// Guards the L3 reasoning and the layer check above: buildah commits a
/// step only after deleting its container, which runs privy's poststop.
/// Without the poststop entry the empty mountpoint is committed, and the
/// layer listing sees it.
#[test]
fn l3_without_the_poststop_hook_buildah_would_commit_an_empty_run_private() {
    if !ready() {
        return;
    }
    let bw = BuildWorld::new("FROM BASE\nRUN test -e /run/private/b\n");
    let hooks = bw.hooks_dir();
    std::fs::remove_file(hooks.join("privy-poststop.json")).unwrap();
    let img = Image::tagged("build");
    run_ok(
        Command::new("buildah")
            .args(["bud", "--no-cache", "--hooks-dir"])
            .arg(&hooks)
            .args(["-t", &img.0, bw.ctx()]),
    );
    let entries = export(&img.0).run_private_entries();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(!export(&img.0).holds(&bw.secret));
}

#[test]
fn privy_build_with_buildah_catches_a_tarball_and_a_build_arg_in_config_and_history() {
    if !ready() {
        return;
    }
    let bw = BuildWorld::new(
        "FROM BASE\n\
         ARG TOKEN\n\
         ENV LEAKED_TOKEN=$TOKEN\n\
         RUN tar czf /leak.tgz -C /run/private b\n",
    );
    let img = Image::tagged("build");
    let arg = format!("TOKEN={}", text(&bw.secret));
    let out = bw.privy_build(&[
        "--",
        "buildah",
        "bud",
        "--no-cache",
        "--build-arg",
        &arg,
        "-t",
        &img.0,
        bw.ctx(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.lines()
            .any(|l| named(l, "leak.tgz!/b") && l.contains("gzip")),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.contains("config") && l.contains("build-only/b")),
        "ENV in the config not named:\n{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.contains("history") && l.contains("build-only/b")),
        "build arg in the history not named:\n{err}"
    );
    assert!(image_exists(&img.0), "without --rm-on-leak the image stays");
}
