//! ctr, containerd's own CLI. `ctr run --runc-binary PATH` runs a runtime
//! binary with no arguments of its own, so privy's runtime wrapper is also
//! installed as a link named `privy-shim` ([`crate::contract::SHIM_ARGV0`]):
//! called by that name, the binary is `privy shim -- ARGS`, with the real
//! runtime from `PRIVY_RUNTIME_PATH` (else `[shim] runtime`, else `runc`). `ctr run` takes
//! the ticket as `--annotation io.privy.ticket=T` (ctr 1.6 puts it into
//! the spec), and [`lifetime_dir`] is how long its container lives.

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
/// as `privy-shim`, or as an OCI runtime with no arguments of its own
/// (`dockerd --add-runtime privy=/usr/local/bin/privy`, see
/// [`super::runtime::called_as_runtime`]); either reads as
/// `privy shim -- ARGS`.
pub fn shim_argv(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    let called = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|n| n == crate::contract::SHIM_ARGV0);
    if called || super::runtime::called_as_runtime(&args) {
        let rest = args.split_off(1);
        args = ["privy", "shim", "--"].map(Into::into).into();
        args.extend(rest);
    }
    args
}

/// The directory of containerd's bundle runtime (shim v2) that holds
/// `<namespace>/<id>` bundles.
const TASK_DIR: &str = "io.containerd.runtime.v2.task";

/// The directory that lives exactly as long as containerd's container:
/// the overlayfs snapshot that is its writable layer
/// (`.../io.containerd.snapshotter.v1.overlayfs/snapshots/N`). containerd
/// writes a bundle per *task* and removes it when the task is deleted
/// (`ctr run` without `-d` does that on exit; so does `ctr task rm`),
/// while the container, and its snapshot, stay until `ctr containers rm`
/// (measured with containerd 1.6: the directory goes within half a second
/// of it). Snapshot numbers come from a sequence and are never reused.
///
/// Found from the rootfs containerd's shim mounted at the bundle's
/// `root.path` (the hook is running, so it is mounted), in this process's
/// `/proc/self/mountinfo`; `None` for bundles that are not containerd's,
/// other snapshotters, or a daemon in another mount namespace.
pub fn lifetime_dir(bundle: &Path, spec: &serde_json::Value) -> Option<std::path::PathBuf> {
    let ns_dir = bundle.parent()?;
    if ns_dir.parent()?.file_name()? != TASK_DIR {
        return None;
    }
    let root = bundle.join(spec.get("root")?.get("path")?.as_str()?);
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    upper_snapshot(&text, &root)
}

/// The snapshot directory of the overlay mounted at `root`, per
/// `mountinfo` (the last mount there wins, as it is the one seen).
fn upper_snapshot(mountinfo: &str, root: &Path) -> Option<std::path::PathBuf> {
    let root = root.to_str()?;
    let mut found = None;
    for line in mountinfo.lines() {
        let (left, right) = line.split_once(" - ")?;
        let mount_point = left.split(' ').nth(4)?;
        if crate::sys::mountinfo::unescape(mount_point) != root {
            continue;
        }
        let mut r = right.split(' ');
        if r.next()? != "overlay" {
            continue;
        }
        let opts = r.nth(1)?;
        let upper = opts
            .split(',')
            .find_map(|o| o.strip_prefix("upperdir="))
            .map(crate::sys::mountinfo::unescape);
        found = upper.and_then(|u| {
            let fs = Path::new(&u);
            let snap = fs.parent()?;
            let ours = fs.is_absolute()
                && fs.file_name()? == "fs"
                && snap.parent()?.file_name()? == "snapshots";
            ours.then(|| snap.to_owned())
        });
    }
    found
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
        // As Docker and containerd call a runtime: global flags first.
        assert_eq!(
            shim_argv(os(
                "/usr/local/bin/privy --root /r --log l --log-format json create --bundle b id"
            )),
            os("privy shim -- --root /r --log l --log-format json create --bundle b id")
        );
        assert_eq!(
            shim_argv(os("privy --systemd-cgroup=true delete id")),
            os("privy shim -- --systemd-cgroup=true delete id")
        );
        assert_eq!(
            shim_argv(os("privy state id")),
            os("privy shim -- state id")
        );
        // privy's own commands (`run` is privy's) and flags stay privy's.
        for own in [
            "privy run -p a:b -- runc run x",
            "privy --config c shim -- create x",
            "privy --version",
            "privy hook create-runtime",
        ] {
            assert_eq!(shim_argv(os(own)), os(own));
        }
        assert_eq!(shim_argv(Vec::new()), Vec::<OsString>::new());
    }

    #[test]
    fn a_containerd_container_lives_as_long_as_its_snapshot() {
        let info = "23 73 0:41 / /s/io.containerd.runtime.v2.task/default/t\\0401/rootfs rw,relatime - overlay overlay rw,lowerdir=/r/snapshots/1/fs,upperdir=/r/snapshots/2/fs,workdir=/r/snapshots/2/work\n\
                    24 73 0:42 / /other rw - tmpfs tmpfs rw\n";
        let root = Path::new("/s/io.containerd.runtime.v2.task/default/t 1/rootfs");
        assert_eq!(
            upper_snapshot(info, root),
            Some(std::path::PathBuf::from("/r/snapshots/2"))
        );
        assert_eq!(upper_snapshot(info, Path::new("/other")), None);
        assert_eq!(upper_snapshot(info, Path::new("/nowhere")), None);
        // Not a containerd bundle: not looked for.
        let spec = serde_json::json!({"root": {"path": "rootfs"}});
        assert_eq!(lifetime_dir(Path::new("/b/x/y"), &spec), None);
    }
}
