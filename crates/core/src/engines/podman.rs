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
