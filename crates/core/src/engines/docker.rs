//! docker: its global flags, and whether its daemon passes annotations on.
//!
//! `docker run|create` take `--annotation` from API 1.43 (Docker 24); an
//! older daemon drops it silently, so privy then passes the ticket as
//! `--env PRIVY_TICKET=` and the hook reads the container's environment.
//! Docker runs no hooks of its own: privy's reach it through `privy shim`
//! configured as a runtime (`dockerd --add-runtime
//! privy=/usr/local/bin/privy`, or `/etc/docker/daemon.json`: `{"runtimes":
//! {"privy": {"path": "/usr/local/bin/privy"}}}`, then `docker run
//! --runtime privy`). Called with runc's command line, privy is the shim
//! (`runtime::called_as_runtime`), which runs the real runtime with the
//! same arguments.

use super::Command;

/// Global flags (before the verb) that take a value: Docker 20.10's
/// `docker --help` on this machine.
pub const GLOBAL_VALUE_FLAGS: &[&str] = &[
    "--config",
    "-c",
    "--context",
    "-H",
    "--host",
    "-l",
    "--log-level",
    "--tlscacert",
    "--tlscert",
    "--tlskey",
];

/// Flags of `docker run` and `docker create` that take a value: Docker
/// 20.10's `run --help` and `create --help` on this machine (a test parses
/// the installed docker's help, so the table cannot drift).
pub const RUN_VALUE_FLAGS: &[&str] = &[
    "-a",
    "--add-host",
    "--annotation",
    "--attach",
    "--blkio-weight",
    "--blkio-weight-device",
    "-c",
    "--cap-add",
    "--cap-drop",
    "--cgroup-parent",
    "--cgroupns",
    "--cidfile",
    "--cpu-count",
    "--cpu-percent",
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
    "--domainname",
    "-e",
    "--entrypoint",
    "--env",
    "--env-file",
    "--expose",
    "--gpus",
    "--group-add",
    "-h",
    "--health-cmd",
    "--health-interval",
    "--health-retries",
    "--health-start-interval",
    "--health-start-period",
    "--health-timeout",
    "--hostname",
    "--io-maxbandwidth",
    "--io-maxiops",
    "--ip",
    "--ip6",
    "--ipc",
    "--isolation",
    "--kernel-memory",
    "-l",
    "--label",
    "--label-file",
    "--link",
    "--link-local-ip",
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
    "-p",
    "--pid",
    "--pids-limit",
    "--platform",
    "--publish",
    "--pull",
    "--restart",
    "--runtime",
    "--security-opt",
    "--shm-size",
    "--stop-signal",
    "--stop-timeout",
    "--storage-opt",
    "--sysctl",
    "--tmpfs",
    "-u",
    "--ulimit",
    "--user",
    "--userns",
    "--uts",
    "-v",
    "--volume",
    "--volume-driver",
    "--volumes-from",
    "-w",
    "--workdir",
];

/// The Docker API version that first passes `--annotation` to the runtime.
const ANNOTATIONS_API: (u32, u32) = (1, 43);

/// Whether the Docker daemon `cmd` talks to passes annotations to the
/// runtime. Asks it (`docker <the same global flags> version`), so a
/// `-H` or `--context` in `cmd` reaches the daemon the command will use.
pub fn passes_annotations(cmd: &Command) -> bool {
    if cmd.verb.is_none() {
        return false;
    }
    let out = std::process::Command::new(&cmd.argv[0])
        .args(cmd.globals())
        .args(["version", "--format", "{{.Server.APIVersion}}"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    let Ok(out) = out else { return false };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text
        .trim()
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= ANNOTATIONS_API
}

/// The file that lives exactly as long as Docker's container `id`: the
/// `<data-root>/containers/<id>/hostname` dockerd bind-mounts as the
/// container's `/etc/hostname` (kept through `docker stop`, removed by
/// `docker rm`), when `spec` (the bundle's `config.json`) has it.
pub fn lifetime_file(spec: &serde_json::Value, id: &str) -> Option<std::path::PathBuf> {
    let mounts = spec.get("mounts")?.as_array()?;
    mounts.iter().find_map(|m| {
        if m.get("destination")?.as_str()? != "/etc/hostname" {
            return None;
        }
        let src = std::path::Path::new(m.get("source")?.as_str()?);
        let dir = src.parent()?;
        let ours = src.is_absolute()
            && src.file_name()? == "hostname"
            && dir.file_name()? == id
            && dir.parent()?.file_name()? == "containers";
        ours.then(|| src.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use crate::engines::Command;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn docker_global_flags_with_values_are_skipped_to_the_verb() {
        let c = Command::parse(&v("docker -H unix:///x -l warn --tlscert c run --rm img"));
        assert_eq!(c.verb(), Some("run"));
        assert_eq!(c.globals(), &v("-H unix:///x -l warn --tlscert c")[..]);
        assert_eq!(
            Command::parse(&v("docker --context=ctx container create img")).verb(),
            Some("create")
        );
    }
}
