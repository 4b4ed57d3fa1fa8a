//! What `privy build` refuses before it runs the engine.

use super::*;

#[test]
fn privy_build_refuses_bad_input_before_running_the_engine() {
    let w = World::new("", "");
    let ctx = tempfile::tempdir().unwrap();
    let key = ctx.path().join("k");
    std::fs::write(&key, b"k").unwrap();
    // A command that would leave a mark if it ran.
    let mark = ctx.path().join("ran");
    let fake = ctx.path().join("podman");
    std::fs::write(&fake, format!("#!/bin/sh\ntouch {}\n", mark.display())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fake = fake.to_str().unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                format!("--private={}:npmrc", key.display()),
                format!("--socket={}", ctx.path().join("no-daemon.sock").display()),
                "--".into(),
                fake.into(),
                "build".into(),
                ".".into(),
            ],
            "privy daemon",
        ),
        (
            vec![
                "--private=:x".into(),
                "--".into(),
                fake.into(),
                "build".into(),
                ".".into(),
            ],
            "SRC:DEST",
        ),
        (
            vec![
                format!("--private={}:../up", key.display()),
                "--".into(),
                fake.into(),
                "build".into(),
                ".".into(),
            ],
            "destination",
        ),
        (
            vec![
                "--private=/nonexistent/key:k".into(),
                "--".into(),
                fake.into(),
                "build".into(),
                ".".into(),
            ],
            "/nonexistent/key",
        ),
        (
            vec!["--".into(), "docker".into(), "build".into(), ".".into()],
            "not podman or buildah",
        ),
        (
            vec!["--".into(), fake.into(), "run".into(), "x".into()],
            "no build subcommand",
        ),
        (
            vec![
                "--".into(),
                fake.into(),
                "build".into(),
                "--isolation".into(),
                "chroot".into(),
                ".".into(),
            ],
            "chroot",
        ),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = std::iter::once("build")
            .chain(args.iter().map(String::as_str))
            .collect();
        let out = w.privy(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(want) && err.lines().count() == 1,
            "{args:?}: {err}"
        );
        assert!(!Path::new(&mark).exists(), "{args:?} ran the engine");
    }
}
