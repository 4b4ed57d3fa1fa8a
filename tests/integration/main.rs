//! privy's integration tests: one binary, a module per area.
//!
//! - `sandbox`: hostile guest components against the real plugin host.
//! - `hostdir`: the shipped `host-dir` source against real directories.
//! - `fuzz_parsers`: property tests of every parser that takes outside
//!   input (OCI state, config.json and the request, privy.toml, RelPath,
//!   grant.hosts and URLs); its counting allocator is this binary's.
//! - `cli`: the `privy` binary: errors, install safety, `privy plugin`, the
//!   C source (built by `.ci/run`; skipped with a reason when absent).
//! - `build`: root-only, real `podman build` and `buildah bud` through
//!   privy's hooks and `privy build`; every layer searched byte for byte.
//! - `scan`: `privy scan` on synthetic layouts, archives and tars, bad
//!   input, output shapes; a real image via podman (root; skips say why).
//! - `engine_flags`: privy's per-verb flag tables against the installed
//!   engines' `run --help` and `create --help` (podman, docker, ctr, runc,
//!   crun), so the tables cannot drift.
//! - `e2e`: root-only, real runc and crun with a busybox rootfs. Each test
//!   says when it skips and why.
//! - `harden_core`: regressions for the hook and materialize defects of
//!   issue 10 (mount propagation, host volumes, system targets, depth,
//!   namespaces, config paths, bundle rewrites, narrowing), on runc and crun.
//! - `uploads`: a real `privy daemon`, `privy run`, podman (crun and runc),
//!   runc/crun bundles, a dockerd of its own through `privy shim`.
//! - `harden_daemon`: `privy daemon` against hostile local users (B2, B3,
//!   B6, B10, B11, B13, a stopped daemon) and fuzzed: raw HTTP requests,
//!   upload and claim bodies, ticket strings, on a live daemon.
//! - `network`: the `privy:source/http` host import against loopback
//!   servers; the hostile fixture asks for un-granted hosts and redirects.
//! - `cri`: root-only, a Kubernetes node: Debian's containerd 1.6 of the
//!   test binary's own (shared by its tests), driven through the CRI gRPC
//!   API as the kubelet drives it, with privy's shim as a runtime handler;
//!   pods get host-dir and OpenBao files, scoped by namespace, image,
//!   container and pod annotations; the pause container gets nothing.
//! - `deploy`: `deploy/kubernetes/`: the manifests against the Kubernetes
//!   schemas (offline), the shipped config and containerd fragments, the
//!   node image built from its Containerfile and its installer run against
//!   a node's directories.
//! - `expiry`: a source says when its files expire (issue 15): the
//!   earliest counts, the host clamps it, a component built before the
//!   interface still runs, `privy plugin run` shows it.
//! - `vault`: the embedded `vault` source against a real OpenBao (`bao`
//!   dev servers from `bao.rs`, plain and TLS), in-process, under runc,
//!   podman and a podman build RUN step.
//!
//! - `agent`: the node agent and the thin hook (`privy-hook`) on runc,
//!   crun and podman: served warm, without an agent, an agent stopped,
//!   killed, restarted or dying mid-answer, reload, who is served.
//! - `rotation`: refreshing a running container's files: the refresh child
//!   against the kernel (atomic renames, readers, inotify, room, a stopped
//!   pid), `privy refresh` on runc, and the agent's scheduler (`refresh`
//!   intervals, SIGHUP, a failing OpenBao, the lock) on runc and podman.
//!
//! With `PRIVY_E2E_REQUIRED=1` (CI sets it) every such skip is a failure.
//!
//! The leak rules L1-L8 (docs/design.md) are named by the tests that prove
//! them: `cargo test lN_` runs rule N's, and
//! [`every_leak_rule_is_named_by_a_test`] fails if a rule has none.
//! Shared set-up is in `util/` (worlds, bundles and images, daemons, the
//! plugin host).

/// Run a test function once with runc and once with crun; each skips
/// (saying why) only where a runtime, busybox or root is truly absent.
macro_rules! on_both_runtimes {
    ($($name:ident),* $(,)?) => {
        $(mod $name {
            #[test]
            fn runc() {
                if crate::util::e2e_ready("runc") { super::$name("runc") }
            }
            #[test]
            fn crun() {
                if crate::util::e2e_ready("crun") { super::$name("crun") }
            }
        })*
    };
}

mod agent;
mod bao;
mod build;
mod cli;
mod cri;
mod deploy;
mod e2e;
mod engine_flags;
mod expiry;
mod fuzz_parsers;
mod harden_core;
mod harden_daemon;
mod hostdir;
mod network;
mod rootless;
mod rotation;
mod sandbox;
mod scan;
mod uploads;
mod util;
mod vault;

/// Every leak rule L1-L8 has at least one test named for it (`fn lN_...`)
/// among the integration tests and the unit tests of both packages.
#[test]
fn every_leak_rule_is_named_by_a_test() {
    fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = Vec::new();
    for d in ["tests/integration", "src", "crates/core/src"] {
        walk(&root.join(d), &mut sources);
    }
    for n in 1..=8 {
        let name = format!("fn l{n}_");
        assert!(
            sources.iter().any(|s| s.contains(&name)),
            "leak rule L{n} is named by no test (`{name}...`)"
        );
    }
}
