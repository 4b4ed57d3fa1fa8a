//! privy on a Kubernetes node, proven through the real CRI: Debian's
//! containerd 1.6 (started once for the test binary, see `cri/node.rs`)
//! driven through its CRI gRPC API exactly as the kubelet drives it, with
//! a runtime handler `privy` whose runc binary is privy's shim.
//!
//! Pods get their files from host-dir and from OpenBao; the pause
//! container gets nothing; a restarted container gets them again; sources
//! are scoped by namespace, image, container name and pod annotations;
//! `RemovePodSandbox` leaves no byte and no mount on the host; a hostile
//! image is refused as under runc; many pods started at once all get
//! their files (`scripts/bench-cri` runs that one with 50 and prints the
//! start-time ratio against the plain runc handler).

mod client;
mod node;

use client::{Ctr, PodSpec, TestPod};
use node::{
    Node, APP_IMAGE, BAIT, HOSTILE_RUN_IMAGE, HOSTILE_TARGET_IMAGE, PAYMENTS_IMAGE, PRIVY, RUNC,
};
use std::path::Path;
use std::time::{Duration, Instant};

fn sha(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// Every secret the node serves.
fn secrets(n: &Node) -> Vec<&[u8]> {
    vec![
        &n.cert,
        &n.blue_key,
        &n.licence,
        &n.db_password,
        &n.db_user,
        &n.team_token,
        n.bao_token.as_bytes(),
    ]
}

/// No file under the node's directory (containerd's root and state, the
/// bundles, the pods' rootfs snapshots, runc's state, the pods' logs,
/// privy's log and state) holds a secret, except the host-dir sources'
/// directories and OpenBao's, which hold them by design.
fn assert_no_secret_on_disk(n: &Node) {
    let skip = n.by_design();
    let finders: Vec<memchr::memmem::Finder> = secrets(n)
        .into_iter()
        .map(memchr::memmem::Finder::new)
        .collect();
    let mut stack = vec![n.dir.clone()];
    let (mut files, mut saw_meta, mut saw_log) = (0, false, false);
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if skip.iter().any(|s| p.starts_with(s)) {
                continue;
            }
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() {
                files += 1;
                saw_meta |= p.ends_with("io.containerd.metadata.v1.bolt/meta.db");
                saw_log |= p == n.privy_log;
                let Ok(bytes) = std::fs::read(&p) else {
                    continue;
                };
                for f in &finders {
                    assert!(
                        f.find(&bytes).is_none(),
                        "a secret is on the host's disk in {}",
                        p.display()
                    );
                }
            }
        }
    }
    // The search is not vacuous: it read containerd's database, and
    // privy's log once a hook has written one.
    assert!(
        saw_meta && (saw_log || !n.privy_log.exists()),
        "the search missed containerd's root or privy's log ({files} files)"
    );
}

/// Nothing of privy's target is mounted in the host's mount namespace.
fn assert_no_target_mount_on_host() {
    let m: Vec<String> = node::mount_points()
        .into_iter()
        .filter(|m| m.ends_with("/run/private") || m.contains("/run/private/"))
        .collect();
    assert!(m.is_empty(), "privy's tmpfs is mounted on the host: {m:?}");
}

/// After `RemovePodSandbox`: the CRI no longer knows the pods, no mount on
/// the host names them or their containers, privy kept no state for them,
/// and no secret is on disk.
fn assert_pods_gone(n: &Node, gone: &[(&str, &[&str])]) {
    let listed = n.pods();
    let mounts = node::mount_points();
    for (pod, ctrs) in gone {
        assert!(
            listed.iter().all(|p| p.id != *pod),
            "RemovePodSandbox left the pod listed"
        );
        for id in std::iter::once(*pod).chain(ctrs.iter().copied()) {
            for m in &mounts {
                assert!(!m.contains(id), "a mount of {id} is left on the host: {m}");
            }
            assert!(
                !n.privy_state.join(format!("{id}.json")).exists(),
                "privy's poststop left its state for {id}"
            );
        }
    }
    assert_no_target_mount_on_host();
    assert_no_secret_on_disk(n);
}

/// `sha256sum FILE` in the container: `Some(digest)` or `None` (absent).
fn digest_in(pod: &TestPod, id: &str, file: &str) -> Option<String> {
    let (code, out, _) = pod.exec(id, &["sha256sum", file]);
    (code == 0).then(|| {
        out.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    })
}

fn has_target(pod: &TestPod, id: &str) -> bool {
    pod.exec(id, &["test", "-e", "/run/private"]).0 == 0
}

fn log(n: &Node) -> String {
    std::fs::read_to_string(&n.privy_log).unwrap_or_default()
}

#[test]
fn pod_gets_host_dir_files_on_a_sealed_tmpfs_and_its_pause_container_gets_nothing() {
    let Some(n) = node::node() else { return };
    // The pod annotation reaches every container of the pod, the sandbox
    // included; the `annotated` source has no pod condition.
    let pod = TestPod::run(
        n,
        &PodSpec::new(PRIVY, "ent-a", "web").annotate("io.privy.entitled", "yes"),
    )
    .unwrap();
    let mut c = Ctr::sleeping("app", APP_IMAGE);
    c.uid = Some(1000);
    let id = pod.run_container(&c).unwrap();
    assert_eq!(
        digest_in(&pod, &id, "/run/private/entitlement/cert.pem"),
        Some(sha(&n.cert))
    );
    assert_eq!(
        digest_in(&pod, &id, "/run/private/annotated/licence.key"),
        Some(sha(&n.licence))
    );
    let (_, owner, _) = pod.exec(
        &id,
        &["stat", "-c", "%u %a", "/run/private/entitlement/cert.pem"],
    );
    assert_eq!(owner.trim(), "1000 640", "owner and mode");
    let (_, line, _) = pod.exec(&id, &["grep", " /run/private ", "/proc/self/mountinfo"]);
    let line = line.trim();
    assert!(
        line.contains(" ro,")
            && line.contains("nosuid")
            && line.contains("nodev")
            && line.contains("noexec"),
        "{line}"
    );
    assert!(line.contains(" - tmpfs "), "{line}");
    let (code, _, _) = pod.exec(&id, &["touch", "/run/private/x"]);
    assert_ne!(code, 0, "the tmpfs is writable");
    assert_no_target_mount_on_host();
    // While the pod runs too: the files are on its tmpfs, not in its
    // rootfs snapshot, its bundle or anywhere else on the host's disk.
    assert_no_secret_on_disk(n);

    // The pause container: no mount, and no audit event for it.
    let pause = pod.sandbox_pid().to_string();
    let m = node::mount_points_of(&pause);
    assert!(m.len() > 3, "cannot read the pause container's mounts");
    assert!(
        m.iter().all(|p| !p.starts_with("/run/private")),
        "the pause container got privy's tmpfs: {m:?}"
    );
    assert!(
        !Path::new(&format!("/proc/{pause}/root/run/private")).exists(),
        "a /run/private was made in the pause container's root"
    );
    let l = log(n);
    assert!(l.contains(&id), "no audit event for the workload container");
    assert!(
        !l.contains(&pod.id),
        "privy served the pause container: {l}"
    );

    let pod_id = pod.id.clone();
    pod.remove();
    assert_pods_gone(n, &[(&pod_id, &[&id])]);
}

#[test]
fn pod_annotated_io_privy_vault_reads_its_secret_from_openbao_and_io_privy_names_narrows_it() {
    let Some(n) = node::node() else { return };
    let pod = TestPod::run(
        n,
        &PodSpec::new(PRIVY, "payments", "api").annotate("io.privy.vault", "payments/db"),
    )
    .unwrap();
    let id = pod
        .run_container(&Ctr::sleeping("api", PAYMENTS_IMAGE))
        .unwrap();
    assert_eq!(
        digest_in(&pod, &id, "/run/private/payments/db/password"),
        Some(sha(&n.db_password))
    );
    assert_eq!(
        digest_in(&pod, &id, "/run/private/payments/db/user"),
        Some(sha(&n.db_user))
    );

    // io.privy.names on the pod works as on a container.
    let narrow = TestPod::run(
        n,
        &PodSpec::new(PRIVY, "payments", "api-narrow")
            .annotate("io.privy.vault", "payments/db")
            .annotate("io.privy.names", "payments/db/password"),
    )
    .unwrap();
    let nid = narrow
        .run_container(&Ctr::sleeping("api", PAYMENTS_IMAGE))
        .unwrap();
    assert_eq!(
        digest_in(&narrow, &nid, "/run/private/payments/db/password"),
        Some(sha(&n.db_password))
    );
    assert_eq!(
        digest_in(&narrow, &nid, "/run/private/payments/db/user"),
        None
    );

    let ids = [pod.id.clone(), narrow.id.clone()];
    pod.remove();
    narrow.remove();
    assert_pods_gone(n, &[(&ids[0], &[&id]), (&ids[1], &[&nid])]);
}

#[test]
fn restarted_container_attempt_1_gets_its_files_again() {
    let Some(n) = node::node() else { return };
    let pod = TestPod::run(n, &PodSpec::new(PRIVY, "ent-restart", "job")).unwrap();
    let first = pod.run_container(&Ctr::sleeping("app", APP_IMAGE)).unwrap();
    assert_eq!(
        digest_in(&pod, &first, "/run/private/entitlement/cert.pem"),
        Some(sha(&n.cert))
    );
    // The image has no /run: privy made the mountpoint and poststop
    // removes it when the container stops.
    assert!(n.privy_state.join(format!("{first}.json")).exists());
    pod.stop(&first);
    assert!(
        !n.privy_state.join(format!("{first}.json")).exists(),
        "poststop did not run for the stopped container"
    );
    // The kubelet restarts a container as the same name, attempt + 1.
    let mut again = Ctr::sleeping("app", APP_IMAGE);
    again.attempt = 1;
    let second = pod.run_container(&again).unwrap();
    assert_ne!(first, second);
    assert_eq!(
        digest_in(&pod, &second, "/run/private/entitlement/cert.pem"),
        Some(sha(&n.cert))
    );
    pod.remove_container(&first);
    let pod_id = pod.id.clone();
    pod.remove();
    assert_pods_gone(n, &[(&pod_id, &[&first, &second])]);
}

#[test]
fn another_namespace_gets_nothing_or_fails_to_start_when_its_required_source_refuses() {
    let Some(n) = node::node() else { return };
    // The payments source is for namespace payments only.
    let other = TestPod::run(
        n,
        &PodSpec::new(PRIVY, "other", "api").annotate("io.privy.vault", "payments/db"),
    )
    .unwrap();
    let oid = other
        .run_container(&Ctr::sleeping("api", PAYMENTS_IMAGE))
        .unwrap();
    assert!(
        !has_target(&other, &oid),
        "a pod in namespace other got files"
    );
    // ... and for payments images only.
    let wrong_image = TestPod::run(
        n,
        &PodSpec::new(PRIVY, "payments", "api").annotate("io.privy.vault", "payments/db"),
    )
    .unwrap();
    let wid = wrong_image
        .run_container(&Ctr::sleeping("api", APP_IMAGE))
        .unwrap();
    assert!(
        !has_target(&wrong_image, &wid),
        "an image outside payments/* got files"
    );

    // Namespaces team-* have a required vault source of their own, which
    // allows only team/*: asking for payments/db stops the container.
    let team = TestPod::run(
        n,
        &PodSpec::new(PRIVY, "team-a", "api").annotate("io.privy.vault", "payments/db"),
    )
    .unwrap();
    let err = team
        .run_container(&Ctr::sleeping("api", APP_IMAGE))
        .expect_err("the container started though its required source refused")
        .message()
        .replace("\\\"", "\"");
    assert!(
        err.contains("privy: source \"team-vault\": denied: path payments/db is not allowed"),
        "{err}"
    );
    for s in secrets(n) {
        assert!(
            !crate::util::contains(err.as_bytes(), s),
            "a secret in the error"
        );
    }
    // The same namespace gets what its source allows.
    let ok = TestPod::run(
        n,
        &PodSpec::new(PRIVY, "team-a", "api-ok").annotate("io.privy.vault", "team/api"),
    )
    .unwrap();
    let kid = ok.run_container(&Ctr::sleeping("api", APP_IMAGE)).unwrap();
    assert_eq!(
        digest_in(&ok, &kid, "/run/private/team/api/token"),
        Some(sha(&n.team_token))
    );
    let ids = [
        other.id.clone(),
        wrong_image.id.clone(),
        team.id.clone(),
        ok.id.clone(),
    ];
    for p in [other, wrong_image, team, ok] {
        p.remove();
    }
    let gone: Vec<(&str, &[&str])> = ids.iter().map(|i| (i.as_str(), &[][..])).collect();
    assert_pods_gone(n, &gone);
}

#[test]
fn pod_annotations_and_container_names_scope_a_source() {
    let Some(n) = node::node() else { return };
    let blue = TestPod::run(
        n,
        &PodSpec::new(PRIVY, "web", "blue").annotate("io.privy.team", "blue-7"),
    )
    .unwrap();
    let app = blue
        .run_container(&Ctr::sleeping("app", APP_IMAGE))
        .unwrap();
    let sidecar = blue
        .run_container(&Ctr::sleeping("sidecar", APP_IMAGE))
        .unwrap();
    assert_eq!(
        digest_in(&blue, &app, "/run/private/blue/team.key"),
        Some(sha(&n.blue_key))
    );
    assert!(
        !has_target(&blue, &sidecar),
        "the sidecar got the app's key"
    );
    let red = TestPod::run(
        n,
        &PodSpec::new(PRIVY, "web", "red").annotate("io.privy.team", "red"),
    )
    .unwrap();
    let rapp = red.run_container(&Ctr::sleeping("app", APP_IMAGE)).unwrap();
    assert!(
        !has_target(&red, &rapp),
        "a pod of another team got the key"
    );
    let ids = [blue.id.clone(), red.id.clone()];
    blue.remove();
    red.remove();
    assert_pods_gone(n, &[(&ids[0], &[&app, &sidecar]), (&ids[1], &[&rapp])]);
}

#[test]
fn hostile_images_are_refused_or_confined_as_under_runc() {
    let Some(n) = node::node() else { return };
    let bait_before = std::fs::read_dir(BAIT).unwrap().count();
    assert_eq!(bait_before, 0, "{BAIT} is not empty before the test");
    // /run/private -> /tmp/privy-cri-bait, a host path: refused, one line.
    let pod = TestPod::run(n, &PodSpec::new(PRIVY, "ent-hostile", "sym")).unwrap();
    let err = pod
        .run_container(&Ctr::sleeping("app", HOSTILE_TARGET_IMAGE))
        .expect_err("a container whose target is a symlink out of its root started")
        .message()
        .to_string();
    assert!(
        err.contains("privy: ") && err.contains("target /run/private"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(BAIT).unwrap().count(),
        0,
        "privy wrote onto the host through the image's symlink"
    );
    // /run -> ../..: resolved inside the root, never next to it.
    let dotdot = TestPod::run(n, &PodSpec::new(PRIVY, "ent-hostile", "dotdot")).unwrap();
    let id = dotdot
        .run_container(&Ctr::sleeping("app", HOSTILE_RUN_IMAGE))
        .unwrap();
    assert_eq!(
        digest_in(&dotdot, &id, "/run/private/entitlement/cert.pem"),
        Some(sha(&n.cert))
    );
    let beside = n.state.join("io.containerd.runtime.v2.task/k8s.io/private");
    assert!(
        !beside.exists(),
        "privy followed ../.. out of the root: {}",
        beside.display()
    );
    let ids = [pod.id.clone(), dotdot.id.clone()];
    pod.remove();
    dotdot.remove();
    assert_pods_gone(n, &[(&ids[0], &[]), (&ids[1], &[&id])]);
}

#[test]
fn config_check_shows_the_node_s_pod_scoped_sources() {
    let Some(n) = node::node() else { return };
    let out = crate::util::privy_with_stdin(
        &["--config", n.config.to_str().unwrap(), "config", "check"],
        b"",
    );
    let text = crate::util::text(&out.stdout);
    assert!(out.status.success(), "{}", crate::util::text(&out.stderr));
    for want in [
        r#"namespace = "payments""#,
        r#"image = "localhost/privy-cri/payments/*""#,
        r#"namespace = "team-*""#,
        r#"container = "app""#,
        r#""io.privy.team" = "blue*""#,
    ] {
        assert!(text.contains(want), "{want} not shown:\n{text}");
    }
}

/// How many pods [`pods_started_in_parallel_all_get_their_files`] starts
/// per handler and round: `PRIVY_CRI_PODS` (scripts/bench-cri sets 50),
/// default 6; and how many rounds: `PRIVY_CRI_ROUNDS`, default 1.
fn load_size() -> (usize, usize) {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(d)
    };
    (env("PRIVY_CRI_PODS", 6), env("PRIVY_CRI_ROUNDS", 1))
}

type Batch = (Duration, Vec<Duration>, Vec<(TestPod, String)>);

/// Start `count` pods at once on `handler`, each with one container; the
/// wall time of the whole batch and each pod's own start time.
fn start_batch(n: &'static Node, handler: &'static str, round: usize, count: usize) -> Batch {
    let started = Instant::now();
    let handles: Vec<_> = (0..count)
        .map(|i| {
            std::thread::spawn(move || {
                let t = Instant::now();
                let spec =
                    PodSpec::new(handler, "ent-load", &format!("load-{handler}-{round}-{i}"));
                let pod = TestPod::run(n, &spec).expect("RunPodSandbox");
                let id = pod
                    .run_container(&Ctr::sleeping("app", APP_IMAGE))
                    .expect("CreateContainer/StartContainer");
                (t.elapsed(), pod, id)
            })
        })
        .collect();
    let mut each = Vec::new();
    let mut pods = Vec::new();
    for h in handles {
        let (d, pod, id) = h.join().expect("a pod did not start");
        each.push(d);
        pods.push((pod, id));
    }
    (started.elapsed(), each, pods)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn pods_started_in_parallel_all_get_their_files() {
    let Some(n) = node::node() else { return };
    let (count, rounds) = load_size();
    let (mut walls, mut each) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    for round in 0..rounds {
        // Alternate which handler goes first, so neither always meets a
        // node still busy tearing down the other's pods.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for h in order {
            let handler = [RUNC, PRIVY][h];
            let (wall, times, pods) = start_batch(n, handler, round, count);
            for (pod, id) in &pods {
                if handler == PRIVY {
                    assert_eq!(
                        digest_in(pod, id, "/run/private/entitlement/cert.pem"),
                        Some(sha(&n.cert)),
                        "a pod of the batch has no files"
                    );
                } else {
                    assert!(!has_target(pod, id), "the plain runc handler ran privy");
                }
            }
            walls[h].push(wall);
            each[h].extend(times);
            let ids: Vec<(String, String)> = pods
                .iter()
                .map(|(p, c)| (p.id.clone(), c.clone()))
                .collect();
            drop(pods);
            let gone: Vec<(&str, Vec<&str>)> = ids
                .iter()
                .map(|(p, c)| (p.as_str(), vec![c.as_str()]))
                .collect();
            let gone: Vec<(&str, &[&str])> = gone.iter().map(|(p, c)| (*p, &c[..])).collect();
            assert_pods_gone(n, &gone);
        }
    }
    let [rw, pw] = [median(&mut walls[0]), median(&mut walls[1])];
    let [re, pe] = [median(&mut each[0]), median(&mut each[1])];
    eprintln!(
        "CRI load: {count} pods at once per handler, {rounds} round(s), shim {}\n  runc:  batch {} ms, median pod {} ms\n  privy: batch {} ms, median pod {} ms\n  ratio privy/runc: batch {:.2}, median pod {:.2}",
        node::privy_binary().display(),
        rw.as_millis(),
        re.as_millis(),
        pw.as_millis(),
        pe.as_millis(),
        pw.as_secs_f64() / rw.as_secs_f64(),
        pe.as_secs_f64() / re.as_secs_f64(),
    );
}
