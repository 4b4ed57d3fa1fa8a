//! materialize's unit tests, through the recording fake.

use super::*;
use crate::secret::{RelPath, Secret};
use crate::sys::mountinfo::{Mount, Namespace};

fn file(path: &str, len: usize, mode: u32) -> CheckedFile {
    CheckedFile {
        path: RelPath::new(path).unwrap(),
        data: Secret::new(vec![b'x'; len]),
        mode,
        source: "s".into(),
    }
}

#[test]
fn mounts_sealed_tmpfs_with_safe_flags_and_owner() {
    let mut os = RecordingOs {
        existing: ["run".to_string()].into(),
        ..Default::default()
    };
    let files = [
        file("entitlement/cert.pem", 10, 0o400),
        file("api.key", 5000, 0o640),
    ];
    let created = materialize(
        &mut os,
        Path::new("/r"),
        "/run/private",
        &files,
        (1000, 1001),
        None,
    )
    .unwrap();
    assert_eq!(created, vec!["run/private"]);
    let opts = TmpfsOptions {
        size_bytes: 4096 + 8192 + 17 * 4096,
        nr_inodes: 2 + 1 + 16,
        mode: 0o700,
        uid: 1000,
        gid: 1001,
        noswap: true,
        context: None,
    };
    assert_eq!(
        os.ops,
        vec![
            Op::MkdirChild {
                path: "run/private".into(),
                mode: 0o755
            },
            Op::NewTmpfs {
                opts,
                attrs: sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV | sys::MOUNT_ATTR_NOEXEC
            },
            Op::WriteFile {
                path: "tmpfs:api.key".into(),
                len: 5000,
                mode: 0o640,
                uid: 1000,
                gid: 1001
            },
            Op::MkdirOwned {
                path: "tmpfs:entitlement".into(),
                mode: 0o700,
                uid: 1000,
                gid: 1001
            },
            Op::WriteFile {
                path: "tmpfs:entitlement/cert.pem".into(),
                len: 10,
                mode: 0o400,
                uid: 1000,
                gid: 1001
            },
            Op::Seal {
                attrs: sys::MOUNT_ATTR_RDONLY
            },
            Op::Attach {
                target: "run/private".into()
            },
        ]
    );
}

#[test]
fn l2_seals_before_attaching_so_the_container_never_sees_it_writable() {
    let mut os = RecordingOs {
        existing: ["run".into(), "run/private".into()].into(),
        ..Default::default()
    };
    let created = materialize(
        &mut os,
        Path::new("/r"),
        "/run/private",
        &[file("a", 1, 0o400)],
        (0, 0),
        None,
    )
    .unwrap();
    assert!(
        created.is_empty(),
        "an existing mountpoint is not ours to remove"
    );
    let seal = os
        .ops
        .iter()
        .position(|o| matches!(o, Op::Seal { .. }))
        .unwrap();
    let attach = os
        .ops
        .iter()
        .position(|o| matches!(o, Op::Attach { .. }))
        .unwrap();
    let last_write = os
        .ops
        .iter()
        .rposition(|o| matches!(o, Op::WriteFile { .. }))
        .unwrap();
    assert!(last_write < seal && seal < attach);
}

#[test]
fn creates_every_missing_component_and_cleanup_removes_them_deepest_first() {
    let mut os = RecordingOs::default();
    let created = materialize(
        &mut os,
        Path::new("/r"),
        "/run/private",
        &[file("a", 1, 0o400)],
        (0, 0),
        None,
    )
    .unwrap();
    assert_eq!(created, vec!["run", "run/private"]);
    os.ops.clear();
    cleanup(&mut os, Path::new("/r"), &created).unwrap();
    assert_eq!(
        os.ops,
        vec![
            Op::RmdirChild {
                path: "run/private".into()
            },
            Op::RmdirChild { path: "run".into() }
        ]
    );
}

/// What a rootless start makes: the recorded tmpfs attempts, and the
/// owners the files got.
fn rootless_start(refuse: Option<i32>) -> (Result<Vec<String>, MaterializeError>, RecordingOs) {
    let mut os = RecordingOs {
        existing: ["run".into()].into(),
        refuse_noswap: refuse,
        ..Default::default()
    };
    // The container user 1000:1000 as the hook's namespace sees it (a
    // rootless engine's `--user 1000` without a nested namespace).
    let r = materialize(
        &mut os,
        Path::new("/r"),
        "/run/private",
        &[file("tok", 3, 0o400)],
        (1000, 1000),
        None,
    );
    (r, os)
}

#[test]
fn noswap_refused_by_a_user_namespace_is_dropped_and_no_other_option_is() {
    for errno in [libc::EINVAL, libc::EPERM] {
        let (r, os) = rootless_start(Some(errno));
        assert_eq!(r.unwrap(), vec!["run/private"]);
        let tmpfs: Vec<&TmpfsOptions> = os
            .ops
            .iter()
            .filter_map(|o| match o {
                Op::NewTmpfs { opts, attrs } => {
                    assert_eq!(*attrs, MOUNT_ATTRS);
                    Some(opts)
                }
                _ => None,
            })
            .collect();
        assert_eq!(tmpfs.len(), 2, "{errno}: {:?}", os.ops);
        assert!(tmpfs[0].noswap);
        let without = TmpfsOptions {
            noswap: false,
            ..tmpfs[0].clone()
        };
        assert_eq!(tmpfs[1], &without, "only noswap differs");
        assert_eq!(
            (without.uid, without.gid, without.mode),
            (1000, 1000, 0o700)
        );
        assert!(os.ops.contains(&Op::WriteFile {
            path: "tmpfs:tok".into(),
            len: 3,
            mode: 0o400,
            uid: 1000,
            gid: 1000
        }));
        assert!(matches!(os.ops.last(), Some(Op::Attach { .. })));
    }
    // Accepted (a rootful hook on 6.4+): asked for once, kept.
    let (r, os) = rootless_start(None);
    r.unwrap();
    let n = os
        .ops
        .iter()
        .filter(|o| matches!(o, Op::NewTmpfs { opts, .. } if opts.noswap))
        .count();
    assert_eq!(n, 1);
    assert!(!os
        .ops
        .iter()
        .any(|o| matches!(o, Op::NewTmpfs { opts, .. } if !opts.noswap)));
}

#[test]
fn noswap_failing_otherwise_fails_the_mount_without_a_retry() {
    let (r, os) = rootless_start(Some(libc::ENOMEM));
    let e = r.unwrap_err().to_string();
    assert!(e.starts_with("mounting tmpfs"), "{e}");
    let attempts = os
        .ops
        .iter()
        .filter(|o| matches!(o, Op::NewTmpfs { .. }))
        .count();
    assert_eq!(attempts, 1);
    assert!(!os.ops.iter().any(|o| matches!(o, Op::Attach { .. })));
    assert!(os.existing.contains("run") && !os.existing.contains("run/private"));
}

#[test]
fn mount_failure_is_reported_and_nothing_is_attached() {
    let mut os = RecordingOs {
        existing: ["run".into()].into(),
        fail_mount: true,
        ..Default::default()
    };
    let e = materialize(
        &mut os,
        Path::new("/r"),
        "/run/private",
        &[file("a", 1, 0o400)],
        (0, 0),
        None,
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("mounting tmpfs"), "{e}");
    assert!(!os
        .ops
        .iter()
        .any(|o| matches!(o, Op::Attach { .. } | Op::WriteFile { .. })));
}

fn run(os: &mut RecordingOs, target: &str) -> Result<Vec<String>, MaterializeError> {
    materialize(
        os,
        Path::new("/r"),
        target,
        &[file("k", 1, 0o400)],
        (0, 0),
        None,
    )
}

fn image(dirs: &[&str], links: &[(&str, &str)]) -> RecordingOs {
    RecordingOs {
        existing: dirs.iter().map(|d| d.to_string()).collect(),
        symlinks: links
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        ..Default::default()
    }
}

fn mount(id: u64, at: &str, fstype: &str, dev: (u32, u32), shared: Option<u64>) -> Mount {
    Mount {
        id,
        parent: 1,
        dev,
        root: "/".into(),
        mount_point: format!("/r/{at}"),
        fstype: fstype.into(),
        shared,
        master: None,
    }
}

#[test]
fn b9_image_symlinks_onto_the_root_or_system_dirs_are_refused_before_anything_changes() {
    for (link, to, resolved) in [
        ("run/private", "/", "\"/\""),
        ("run/private", "../../..", "\"/\""),
        ("run/private", ".", "\"/run\""),
        ("run/private", "..", "\"/\""),
        ("run/private", "/proc", "\"/proc\""),
        ("run/private", "/proc/sys/kernel", "\"/proc/sys/kernel\""),
        ("run/private", "/bin", "\"/bin\""),
        ("run/private", "../../usr/./lib", "\"/usr/lib\""),
    ] {
        let mut os = image(
            &[
                "run",
                "proc",
                "proc/sys",
                "proc/sys/kernel",
                "bin",
                "usr",
                "usr/lib",
            ],
            &[(link, to)],
        );
        let e = run(&mut os, "/run/private").expect_err(to);
        assert!(
            matches!(&e, MaterializeError::SystemPath { resolved: r, .. } if r == resolved),
            "{link} -> {to}: {e}"
        );
        assert!(
            e.to_string().starts_with("target /run/private resolves to"),
            "{e}"
        );
        assert!(os.ops.is_empty(), "{link} -> {to}: {:?}", os.ops);
    }
}

#[test]
fn b9_deep_targets_in_system_dirs_and_links_to_them_still_work() {
    let mut os = image(&["etc", "etc/pki"], &[]);
    assert_eq!(
        run(&mut os, "/etc/pki/entitlement").unwrap(),
        vec!["etc/pki/entitlement"]
    );
    let mut os = image(&["var", "var/run"], &[("run", "var/run")]);
    assert_eq!(
        run(&mut os, "/run/private").unwrap(),
        vec!["var/run/private"]
    );
    assert!(os.ops.contains(&Op::Attach {
        target: "var/run/private".into()
    }));
}

#[test]
fn b7_missing_directories_on_a_host_volume_are_refused() {
    // /run -> /data, and /data is a bind mount of a host directory.
    let mut os = image(&["data"], &[("run", "/data")]);
    os.mounts
        .insert("data".into(), mount(7, "data", "ext4", (254, 0), None));
    os.own_devs.insert((254, 0));
    let e = run(&mut os, "/run/private").unwrap_err();
    assert!(matches!(e, MaterializeError::ForeignMount { .. }), "{e}");
    let line = e.to_string();
    assert!(
        line.contains("create \"/data/private\" on \"/r/data\" (\"ext4\")"),
        "{line}"
    );
    assert!(os.ops.is_empty(), "{:?}", os.ops);
    // The same directory already there: nothing to create, so mounting
    // over it (in the container's namespace only) is fine.
    let mut os = image(&["data", "data/private"], &[("run", "/data")]);
    os.mounts
        .insert("data".into(), mount(7, "data", "ext4", (254, 0), None));
    assert!(run(&mut os, "/run/private").unwrap().is_empty());
}

#[test]
fn b7_a_tmpfs_of_the_container_may_hold_the_mountpoint_a_host_tmpfs_may_not() {
    let mut os = image(&["run"], &[]);
    os.mounts
        .insert("run".into(), mount(8, "run", "tmpfs", (0, 99), None));
    assert_eq!(run(&mut os, "/run/private").unwrap(), vec!["run/private"]);
    let mut os = image(&["run"], &[]);
    os.mounts
        .insert("run".into(), mount(8, "run", "tmpfs", (0, 99), None));
    os.own_devs.insert((0, 99));
    assert!(matches!(
        run(&mut os, "/run/private").unwrap_err(),
        MaterializeError::ForeignMount { .. }
    ));
    assert!(os.ops.is_empty());
}

#[test]
fn b1_a_shared_parent_whose_peers_reach_another_namespace_is_refused() {
    let setup = |host_has_peer: bool| {
        let mut os = image(&["run", "run/private"], &[]);
        os.mounts
            .insert("run".into(), mount(90, "run", "ext4", (254, 0), Some(1)));
        let container = Namespace {
            id: 4026532178,
            pid: 4242,
            own: false,
            mounts: vec![mount(90, "run", "ext4", (254, 0), Some(1))],
        };
        let mut host = Namespace {
            id: 4026531840,
            pid: 1,
            own: true,
            mounts: vec![mount(27, "", "ext4", (254, 0), None)],
        };
        if host_has_peer {
            let mut bait = mount(46, "", "ext4", (254, 0), Some(1));
            bait.mount_point = "/tmp/bait".into();
            host.mounts.push(bait);
        }
        os.namespaces = (container.id, vec![container, host]);
        os
    };
    let mut os = setup(true);
    let e = run(&mut os, "/run/private").unwrap_err();
    let line = e.to_string();
    assert!(matches!(e, MaterializeError::Propagates { .. }), "{line}");
    assert!(
        line.contains("(\"/r/run\", shared:1) propagates to \"/tmp/bait\" in privy's own mount namespace (the host's)"),
        "{line}"
    );
    assert!(os.ops.is_empty(), "{:?}", os.ops);
    // Peers only inside the container: the mount stays inside.
    let mut os = setup(false);
    run(&mut os, "/run/private").unwrap();
    assert!(os.ops.iter().any(|o| matches!(o, Op::Attach { .. })));
}

#[test]
fn a_dangling_symlink_is_named_in_one_line() {
    let mut os = image(&[], &[("run", "/data")]);
    let e = run(&mut os, "/run/private").unwrap_err().to_string();
    assert_eq!(
        e,
        "target /run/private: \"/run\" in the image is a symlink to \"/data\", which does not exist in the image; privy does not create directories through a symlink"
    );
    assert!(os.ops.is_empty());
    let mut os = image(&["run"], &[("run/private", "x\u{1b}[2K")]);
    let e = run(&mut os, "/run/private").unwrap_err().to_string();
    assert!(e.contains("\"x\\u{1b}[2K\""), "{e}");
}

#[test]
fn symlink_loops_and_files_on_the_way_are_refused() {
    let mut os = image(&[], &[("run", "/run")]);
    assert!(matches!(
        run(&mut os, "/run/private").unwrap_err(),
        MaterializeError::TooManySymlinks { .. }
    ));
    let mut os = image(&[], &[]);
    os.files.insert("run".into());
    let e = run(&mut os, "/run/private").unwrap_err().to_string();
    assert_eq!(
        e,
        "target /run/private: \"/run\" in the image is not a directory"
    );
}

#[test]
fn b12_every_failure_after_creating_the_mountpoint_removes_it() {
    let mut os = RecordingOs {
        fail_write: Some("tmpfs:b".into()),
        ..Default::default()
    };
    let e = materialize(
        &mut os,
        Path::new("/r"),
        "/run/private",
        &[file("a", 1, 0o400), file("b", 1, 0o400)],
        (0, 0),
        None,
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("writing b"), "{e}");
    let tail: Vec<&Op> = os.ops.iter().rev().take(2).collect();
    assert_eq!(
        tail,
        vec![
            &Op::RmdirChild { path: "run".into() },
            &Op::RmdirChild {
                path: "run/private".into()
            },
        ]
    );
    assert!(!os.ops.iter().any(|o| matches!(o, Op::Attach { .. })));
    // A failed mount too.
    let mut os = RecordingOs {
        fail_mount: true,
        ..Default::default()
    };
    run(&mut os, "/run/private").unwrap_err();
    assert!(os.existing.is_empty(), "{:?}", os.existing);
}

#[test]
fn b12_open_directory_handles_are_bounded_by_depth_not_by_count() {
    // 300 files, each in its own 20-deep directory chain.
    let files: Vec<CheckedFile> = (0..300)
        .map(|i| file(&format!("{}f", format!("d{i}/").repeat(20)), 1, 0o400))
        .collect();
    let mut os = RecordingOs::default();
    materialize(
        &mut os,
        Path::new("/r"),
        "/run/private",
        &files,
        (0, 0),
        None,
    )
    .unwrap();
    let (now, max) = os.open_dirs.get();
    assert_eq!(now, 0);
    assert!(max <= 21, "{max} directory handles open at once");
    assert_eq!(
        os.ops
            .iter()
            .filter(|o| matches!(o, Op::MkdirOwned { .. }))
            .count(),
        300 * 20
    );
}

/// SELinux: the tmpfs carries the container's `mountLabel` as `context=`
/// exactly when the host has SELinux on and the bundle has a label; no
/// such option otherwise (a kernel without SELinux refuses it).
#[test]
fn selinux_context_only_with_selinux_on_and_a_mount_label() {
    let label = "system_u:object_r:container_file_t:s0:c123,c456";
    for (selinux, mount_label, want) in [
        (true, Some(label), Some(label)),
        (true, None, None),
        (false, Some(label), None),
        (false, None, None),
    ] {
        let mut os = RecordingOs {
            selinux,
            ..Default::default()
        };
        materialize(
            &mut os,
            Path::new("/r"),
            "/run/private",
            &[file("k", 1, 0o400)],
            (0, 0),
            mount_label,
        )
        .unwrap();
        let ctx: Vec<Option<String>> = os
            .ops
            .iter()
            .filter_map(|o| match o {
                Op::NewTmpfs { opts, .. } => Some(opts.context.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            ctx,
            vec![want.map(String::from)],
            "selinux {selinux}, mountLabel {mount_label:?}"
        );
    }
}
