//! `privy build` with `podman build`.

use super::*;

#[test]
fn l3_privy_build_with_podman_gives_every_run_step_the_files_and_leaves_no_trace() {
    if !ready() {
        return;
    }
    let bw = BuildWorld::new(CLEAN);
    let control = control(&bw);
    let img = Image::tagged("build");
    let out = bw.podman_build(&[], &img);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{}\n{err}", text(&out.stdout));
    assert!(err.contains("is clean"), "{err}");
    assert!(!contains(&out.stdout, &bw.secret) && !contains(&out.stderr, &bw.secret));
    assert!(!contains(&bw.w.log(), &bw.secret));
    assert_clean_image(&bw, &img.0, &control);
    assert_eq!(
        listing(&img.0),
        "a\nb\n",
        "privy build's annotations reach the hook"
    );
}

#[test]
fn privy_build_with_podman_catches_copies_encodings_and_prefixes_and_rm_on_leak_removes_the_image()
{
    if !ready() {
        return;
    }
    let bw = BuildWorld::new(
        "FROM BASE\n\
         RUN cp /run/private/b /leak-cp\n\
         RUN base64 /run/private/b > /leak-b64\n\
         RUN head -c 48 /run/private/b > /leak-head\n\
         RUN xxd -p /run/private/b > /leak-hex\n\
         RUN od -A n -t x1 /run/private/b > /leak-od\n",
    );
    let img = Image::tagged("build");
    let out = bw.privy_build(&[
        "--rm-on-leak",
        "--",
        "podman",
        "build",
        "--no-cache",
        &format!("--tag={}", img.0),
        bw.ctx(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("LEAK"), "{err}");
    for (path, kind) in [
        ("leak-cp", "exact"),
        ("leak-b64", "base64"),
        ("leak-head", "substring"),
        ("leak-hex", "hex"),
        ("leak-od", "hex"),
    ] {
        assert!(named(&err, path), "{path} not named:\n{err}");
        assert!(
            err.lines().any(|l| l.contains(path) && l.contains(kind)),
            "{path} not matched as {kind}:\n{err}"
        );
    }
    assert!(!contains(&out.stderr, &bw.secret) && !contains(&out.stdout, &bw.secret));
    assert!(err.contains("removed image"), "{err}");
    assert!(!image_exists(&img.0), "--rm-on-leak removes the image");
}

#[test]
fn privy_build_passes_the_engines_failure_status_through_and_does_not_scan() {
    if !ready() {
        return;
    }
    let bw = BuildWorld::new("FROM BASE\nRUN exit 7\n");
    let img = Image::tagged("build");
    let direct = Command::new("podman")
        .args(["build", "--no-cache", "-t", &img.0, bw.ctx()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let code = direct.status.code().unwrap();
    assert_ne!(code, 0);
    let out = bw.podman_build(&[], &img);
    assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("clean"));
}

#[test]
fn privy_build_uploads_private_files_as_a_build_ticket_and_catches_their_leak() {
    if !ready() {
        return;
    }
    let bw = BuildWorld::new(
        "FROM BASE\n\
         RUN wc -c < /run/private/npmrc > /size && test -e /run/private/b\n\
         RUN cp /run/private/npmrc /leak-upload\n",
    );
    let socket = bw.w.dir.path().join("privy.sock");
    bw.w.append_config(&format!("[daemon]\nsocket = {socket:?}\n"));
    let _daemon = Daemon::start(&bw.w, &socket);
    let upload = secret("upload");
    let src = bw.w.dir.path().join("npmrc");
    std::fs::write(&src, &upload).unwrap();
    let img = Image::tagged("build");
    let private = format!("--private={}:npmrc", src.display());
    let out = bw.podman_build(&[&private], &img);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.lines().any(|l| l.contains("leak-upload")
            && l.contains("--private/npmrc")
            && l.contains("exact")),
        "{err}"
    );
    assert!(!contains(&out.stderr, &upload) && !contains(&out.stdout, &upload));
    let ex = export(&img.0);
    assert_eq!(
        ex.file("size").map(|s| text(&s).trim().to_string()),
        Some(upload.len().to_string()),
        "the first RUN step read the upload"
    );
    assert_eq!(ex.run_private_entries(), Vec::<String>::new());
}
