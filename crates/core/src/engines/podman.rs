//! podman: its global flags, and what it does with privy's pieces.
//!
//! `podman run|create` (and `podman container run|create`) take
//! `--annotation K=V` after the verb and pass it to the runtime's
//! `config.json`, so the ticket reaches the hook as `io.privy.ticket`.
//! podman runs privy's hooks from the hooks.d directories it reads
//! (`--hooks-dir`, else containers.conf's `hooks_dir`, else
//! `/usr/share/containers/oci/hooks.d`). `podman build` is buildah inside:
//! see [`super::buildah`].

/// Global flags (before the verb) that take a value: podman 4.3's
/// `podman --help` on this machine, plus the newer ones (`--module`,
/// `--imagestore`, `--registries-conf`, `--config`) later podmans take.
pub const GLOBAL_VALUE_FLAGS: &[&str] = &[
    "--cgroup-manager",
    "--conmon",
    "--connection",
    "-c",
    "--events-backend",
    "--hooks-dir",
    "--identity",
    "--log-level",
    "--namespace",
    "--network-cmd-path",
    "--network-config-dir",
    "--root",
    "--runroot",
    "--runtime",
    "--runtime-flag",
    "--ssh",
    "--storage-driver",
    "--storage-opt",
    "--tmpdir",
    "--url",
    "--volumepath",
    "--module",
    "--imagestore",
    "--registries-conf",
    "--config",
];

/// Flags of `podman run` and `podman create` that take a value: podman
/// 4.3's `run --help` and `create --help` on this machine (a test parses
/// the installed podman's help, so the table cannot drift). With them the
/// options before the image are read whole, so `--rm` and `-d` are seen
/// wherever they are among them.
pub const RUN_VALUE_FLAGS: &[&str] = &[
    "-a",
    "--add-host",
    "--annotation",
    "--arch",
    "--attach",
    "--authfile",
    "--blkio-weight",
    "--blkio-weight-device",
    "-c",
    "--cap-add",
    "--cap-drop",
    "--cgroup-conf",
    "--cgroup-parent",
    "--cgroupns",
    "--cgroups",
    "--chrootdirs",
    "--cidfile",
    "--conmon-pidfile",
    "--cpu-period",
    "--cpu-quota",
    "--cpu-rt-period",
    "--cpu-rt-runtime",
    "--cpu-shares",
    "--cpus",
    "--cpuset-cpus",
    "--cpuset-mems",
    "--detach-keys",
    "--device",
    "--device-cgroup-rule",
    "--device-read-bps",
    "--device-read-iops",
    "--device-write-bps",
    "--device-write-iops",
    "--dns",
    "--dns-option",
    "--dns-search",
    "-e",
    "--entrypoint",
    "--env",
    "--env-file",
    "--env-merge",
    "--expose",
    "--gidmap",
    "--group-add",
    "-h",
    "--health-cmd",
    "--health-interval",
    "--health-on-failure",
    "--health-retries",
    "--health-start-period",
    "--health-timeout",
    "--hostname",
    "--hostuser",
    "--image-volume",
    "--init-ctr",
    "--init-path",
    "--ip",
    "--ip6",
    "--ipc",
    "-l",
    "--label",
    "--label-file",
    "--log-driver",
    "--log-opt",
    "-m",
    "--mac-address",
    "--memory",
    "--memory-reservation",
    "--memory-swap",
    "--memory-swappiness",
    "--mount",
    "--name",
    "--network",
    "--network-alias",
    "--oom-score-adj",
    "--os",
    "-p",
    "--passwd-entry",
    "--personality",
    "--pid",
    "--pidfile",
    "--pids-limit",
    "--platform",
    "--pod",
    "--pod-id-file",
    "--preserve-fds",
    "--publish",
    "--pull",
    "--requires",
    "--restart",
    "--sdnotify",
    "--seccomp-policy",
    "--secret",
    "--security-opt",
    "--shm-size",
    "--stop-signal",
    "--stop-timeout",
    "--subgidname",
    "--subuidname",
    "--sysctl",
    "--systemd",
    "--timeout",
    "--tmpfs",
    "--tz",
    "-u",
    "--uidmap",
    "--ulimit",
    "--umask",
    "--unsetenv",
    "--user",
    "--userns",
    "--uts",
    "-v",
    "--variant",
    "--volume",
    "--volumes-from",
    "-w",
    "--workdir",
];

#[cfg(test)]
mod tests {
    use crate::engines::Command;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn podman_global_flags_with_values_are_skipped_to_the_verb() {
        let c = Command::parse(&v(
            "podman --connection c --runtime runc --log-level=debug --storage-opt a=b run --rm img",
        ));
        assert_eq!(c.verb(), Some("run"));
        assert_eq!(
            Command::parse(&v("podman -c c run img")).verb(),
            Some("run")
        );
        assert_eq!(
            Command::parse(&v("podman --namespace ns create img")).verb(),
            Some("create")
        );
    }
}
