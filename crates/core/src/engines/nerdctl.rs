//! nerdctl: containerd's Docker-compatible CLI. Its `run|create` take
//! `--annotation` like podman's. nerdctl is not installed on the machine
//! privy is tested on: its flag table is taken from nerdctl's documentation
//! (docs/command-reference.md, "Global flags"). Its `run` and `create`
//! are read with Docker's flag table (`docker::RUN_VALUE_FLAGS`), whose
//! flags nerdctl takes; a value flag only nerdctl has is a safe miss (the
//! options end early, so a later `--rm` is not seen and the ticket waits
//! for the sweep). Not checked against a real nerdctl.

/// Global flags (before the verb) that take a value.
pub const GLOBAL_VALUE_FLAGS: &[&str] = &[
    "-n",
    "--namespace",
    "-a",
    "-H",
    "--address",
    "--host",
    "--snapshotter",
    "--storage-driver",
    "--cni-path",
    "--cni-netconfpath",
    "--data-root",
    "--cgroup-manager",
    "--host-gateway-ip",
    "--hosts-dir",
];

#[cfg(test)]
mod tests {
    use crate::engines::Command;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn nerdctl_global_flags_with_values_are_skipped_to_the_verb() {
        let c = Command::parse(&v("nerdctl -n k8s.io --snapshotter native run --rm img"));
        assert_eq!(c.verb(), Some("run"));
    }
}
