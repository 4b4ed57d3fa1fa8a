//! ctr, containerd's own CLI. `ctr run --runc-binary PATH` runs a runtime
//! binary with no arguments of its own, so privy's runtime wrapper is also
//! installed as a link named `privy-shim` ([`crate::contract::SHIM_ARGV0`]):
//! called by that name, the binary is `privy shim -- ARGS`, with the real
//! runtime from `PRIVY_RUNTIME_PATH` (default `runc`).

use std::ffi::OsString;
use std::path::Path;

/// Global flags (before the verb) that take a value (`ctr --help`).
pub const GLOBAL_VALUE_FLAGS: &[&str] = &[
    "-a",
    "--address",
    "-n",
    "--namespace",
    "--timeout",
    "--connect-timeout",
];

/// Flags of `ctr run` (and `ctr containers create`) that take a value:
/// containerd 1.6's `ctr run --help` on this machine (a test parses the
/// installed ctr's help, so the table cannot drift).
pub const RUN_VALUE_FLAGS: &[&str] = &[
    "--annotation",
    "--apparmor-default-profile",
    "--apparmor-profile",
    "-c",
    "--cap-add",
    "--cap-drop",
    "--cgroup",
    "--config",
    "--cpu-period",
    "--cpu-quota",
    "--cpu-shares",
    "--cpus",
    "--cwd",
    "--device",
    "--env",
    "--env-file",
    "--fifo-dir",
    "--gidmap",
    "--gpus",
    "--label",
    "--log-uri",
    "--memory-limit",
    "--mount",
    "--pid-file",
    "--platform",
    "--rdt-class",
    "--rootfs-propagation",
    "--runc-binary",
    "--runc-root",
    "--runtime",
    "--runtime-config-path",
    "--seccomp-profile",
    "--snapshotter",
    "--snapshotter-label",
    "--uidmap",
    "--with-ns",
];

/// The command line privy runs as: unchanged, unless the binary was called
/// as `privy-shim`, which reads as `privy shim -- ARGS`.
pub fn shim_argv(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    let called = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|n| n == crate::contract::SHIM_ARGV0);
    if called {
        let rest = args.split_off(1);
        args = ["privy", "shim", "--"].map(Into::into).into();
        args.extend(rest);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn called_as_privy_shim_the_binary_is_the_shim() {
        assert_eq!(
            shim_argv(os("/usr/local/bin/privy-shim --root /r create id")),
            os("privy shim -- --root /r create id")
        );
        assert_eq!(shim_argv(os("privy scan x")), os("privy scan x"));
        assert_eq!(shim_argv(Vec::new()), Vec::<OsString>::new());
    }
}
