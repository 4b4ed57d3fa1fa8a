//! Installing privy's hooks: into one bundle's `config.json` (runc, crun),
//! or as hooks.d JSON (podman, buildah, CRI-O). Podman silently skips a
//! hooks.d entry whose binary is missing, which would fail open, so both
//! refuse unless the binary is where the hook will point.

use crate::contract::SYSTEMD_UNITS;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// hooks.d file names privy owns.
pub use crate::contract::HOOKS_D_FILES;

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("hook binary {path}: {msg}")]
    Binary { path: PathBuf, msg: String },
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
}

fn ferr(path: &Path, e: impl std::fmt::Display) -> InstallError {
    InstallError::File {
        path: path.to_owned(),
        msg: e.to_string(),
    }
}

/// The binary must be an absolute path to an executable regular file.
pub fn check_binary(path: &Path) -> Result<(), InstallError> {
    let bad = |msg: &str| InstallError::Binary {
        path: path.to_owned(),
        msg: msg.into(),
    };
    if !path.is_absolute() {
        return Err(bad("must be an absolute path"));
    }
    let m = std::fs::metadata(path).map_err(|e| {
        bad(&format!(
            "{e}; a hook whose binary is missing is skipped silently by podman, so privy refuses"
        ))
    })?;
    if !m.is_file() || m.permissions().mode() & 0o111 == 0 {
        return Err(bad("is not an executable file"));
    }
    Ok(())
}

fn hook_args(stage: &str, config: Option<&Path>) -> Vec<String> {
    let mut a = vec!["privy".to_string()];
    if let Some(c) = config {
        a.push("--config".into());
        a.push(c.display().to_string());
    }
    a.push("hook".into());
    a.push(stage.into());
    a
}

/// The binary the hooks run for a `privy` at `binary`: the thin hook,
/// `privy-hook`, installed next to it (it starts in a fraction of a
/// millisecond and falls back to `privy hook` itself when no agent
/// answers), or `binary` when there is none (a hook binary given by hand,
/// such as `/bin/true` for a benchmark's floor, or a build without it).
pub fn hook_binary(binary: &Path) -> PathBuf {
    let thin = binary.with_file_name(crate::contract::THIN_HOOK_BINARY);
    if binary.file_name().is_some_and(|n| n == "privy") && check_binary(&thin).is_ok() {
        thin
    } else {
        binary.to_owned()
    }
}

/// A hook privy installed: one that runs `binary`, or a binary named
/// `privy` or `privy-hook` with the `hook` argument (so installing the thin
/// hook over the fat one, or again, leaves one copy).
fn is_privy_hook(h: &Value, binary: &Path) -> bool {
    let path = h.get("path").and_then(Value::as_str).map(Path::new);
    let ours = path.is_some_and(|p| {
        p == binary
            || p.file_name()
                .is_some_and(|n| n == "privy" || n == crate::contract::THIN_HOOK_BINARY)
    });
    ours && h
        .get("args")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x == "hook"))
}

/// Add (or with `uninstall`, remove) privy's createRuntime and poststop
/// hooks in `<bundle>/config.json`. Installing twice leaves one copy.
pub fn bundle(
    bundle: &Path,
    binary: &Path,
    config: Option<&Path>,
    uninstall: bool,
) -> Result<(), InstallError> {
    if !uninstall {
        check_binary(binary)?;
    }
    let path = bundle.join("config.json");
    // Never through a symlink: a bundle may be writable by someone else (B8).
    let dir = crate::sys::open_dir_path(bundle).map_err(|e| ferr(bundle, e))?;
    let (text, _) = crate::sys::read_regular_at(
        std::os::fd::AsRawFd::as_raw_fd(&dir),
        "config.json",
        16 << 20,
    )
    .map_err(|e| ferr(&path, e))?;
    let mut spec: Value = serde_json::from_slice(&text).map_err(|e| ferr(&path, e))?;
    let obj = spec
        .as_object_mut()
        .ok_or_else(|| ferr(&path, "not a JSON object"))?;
    let hooks = obj.entry("hooks").or_insert_with(|| json!({}));
    let hooks = hooks
        .as_object_mut()
        .ok_or_else(|| ferr(&path, "`hooks` is not an object"))?;
    for (stage, arg) in [
        ("createRuntime", crate::contract::HOOK_CREATE_RUNTIME),
        ("poststop", crate::contract::HOOK_POSTSTOP),
    ] {
        let list = hooks.entry(stage).or_insert_with(|| json!([]));
        let list = list
            .as_array_mut()
            .ok_or_else(|| ferr(&path, format!("`hooks.{stage}` is not an array")))?;
        list.retain(|h| !is_privy_hook(h, binary));
        if !uninstall {
            list.push(json!({ "path": binary.display().to_string(), "args": hook_args(arg, config), "timeout": 30 }));
        }
    }
    hooks.retain(|_, v| v.as_array().is_none_or(|a| !a.is_empty()));
    if hooks.is_empty() {
        obj.remove("hooks");
    }
    write_atomic(&path, &serde_json::to_vec_pretty(&spec).expect("json"))
}

/// Remove `files`; one already gone is fine.
fn remove_all(files: &[PathBuf]) -> Result<(), InstallError> {
    for f in files {
        match std::fs::remove_file(f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ferr(f, e)),
        }
    }
    Ok(())
}

/// Write (or remove) privy's hooks.d entries in `dir`.
pub fn hooks_dir(
    dir: &Path,
    binary: &Path,
    config: Option<&Path>,
    uninstall: bool,
) -> Result<Vec<PathBuf>, InstallError> {
    let files: Vec<PathBuf> = HOOKS_D_FILES.iter().map(|f| dir.join(f)).collect();
    if uninstall {
        remove_all(&files)?;
        return Ok(files);
    }
    write_hooks_d(dir, binary, config, &[])?;
    Ok(files)
}

/// Write privy's two hooks.d entries into `dir`, each hook run with exactly
/// `env` (`KEY=VALUE`; a runtime passes a hook nothing else). `privy build`
/// writes a per-build directory this way; `dir` is created 0700 if missing.
pub fn write_hooks_d(
    dir: &Path,
    binary: &Path,
    config: Option<&Path>,
    env: &[String],
) -> Result<Vec<PathBuf>, InstallError> {
    check_binary(binary)?;
    std::fs::create_dir_all(dir).map_err(|e| ferr(dir, e))?;
    let files: Vec<PathBuf> = HOOKS_D_FILES.iter().map(|f| dir.join(f)).collect();
    for (f, (stage, arg)) in files.iter().zip([
        ("createRuntime", crate::contract::HOOK_CREATE_RUNTIME),
        ("poststop", crate::contract::HOOK_POSTSTOP),
    ]) {
        let mut hook = json!({ "path": binary.display().to_string(), "args": hook_args(arg, config), "timeout": 30 });
        if !env.is_empty() {
            hook["env"] = json!(env);
        }
        let entry = json!({
            "version": "1.0.0",
            "hook": hook,
            "when": { "always": true },
            "stages": [stage],
        });
        write_atomic(f, &serde_json::to_vec_pretty(&entry).expect("json"))?;
    }
    Ok(files)
}

/// Replace `path` atomically, never writing through a symlink planted in
/// its directory (a fresh randomly named file, then a rename: B8). The
/// file keeps the mode and owner of the one it replaces.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
    else {
        return Err(ferr(path, "not a file path"));
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let dir = crate::sys::open_dir_path(parent).map_err(|e| ferr(parent, e))?;
    let like = std::fs::symlink_metadata(path).ok().filter(|m| m.is_file());
    let opts = crate::sys::WriteOpts {
        mode: None,
        sync: true,
        replace_only: false,
    };
    crate::sys::write_atomic_at(&dir, name, bytes, like.as_ref(), opts).map_err(|e| ferr(path, e))
}

/// The socket and service units for `privy daemon`, socket-activated.
pub fn systemd_units(
    binary: &Path,
    config: Option<&Path>,
    socket: &Path,
    cache: &Path,
) -> [(&'static str, String); 2] {
    let cache = cache.display();
    let mut exec = binary.display().to_string();
    if let Some(c) = config {
        exec.push_str(&format!(" --config {}", c.display()));
    }
    let socket_unit = format!(
        r#"# Written by `privy install --systemd`.
[Unit]
Description=privy daemon socket (the node agent for privy-hook, and per-run private file uploads)
Documentation=man:privy(1) https://github.com/privy/privy

[Socket]
ListenStream={socket}
# Every uid may upload; the daemon scopes each ticket to the uploader's uid,
# and serves hooks (POST /v1/hook) to root only (SO_PEERCRED).
SocketMode=0666
DirectoryMode=0755
RemoveOnStop=yes

[Install]
WantedBy=sockets.target
"#,
        socket = socket.display()
    );
    let service_unit = format!(
        r#"# Written by `privy install --systemd`.
[Unit]
Description=privy daemon: the node agent (warm source plugins for privy-hook) and per-run uploads, held in memory only
Requires=privy.socket
After=privy.socket

[Service]
Type=simple
ExecStart={exec} daemon
# SIGHUP reloads the config and every plugin (a changed file is also
# picked up by itself, within a second).
ExecReload=/bin/kill -HUP $MAINPID
# Uploads live in this process's memory and nowhere else (leak rule L1):
# locked against swap, no core dumps, no writable disk but the plugin cache.
LimitMEMLOCK=infinity
LimitCORE=0
MemorySwapMax=0
ProtectSystem=strict
# Compiled plugin code is cached here (root-only; privy checks owner and mode).
ReadWritePaths=-{cache}
# Read-only, not hidden: a rootless container's bundle lives under /home,
# and the daemon checks that it still exists.
ProtectHome=read-only
PrivateTmp=yes
PrivateDevices=yes
# The agent runs the configured sources, and a source may be granted
# network hosts (the vault plugin): no PrivateNetwork=, and IP families
# besides Unix sockets. What a plugin may reach is its grant's business
# (grant.hosts, checked by the host before any connection).
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
NoNewPrivileges=yes
# No MemoryDenyWriteExecute=: the agent runs WebAssembly, and wasmtime maps
# the code it compiled (or loads from the cache) executable. What replaces
# it: code pages come only from privy's own compiler or from its cache
# directory, used only when root-owned and writable by nobody else; plugin
# code is sandboxed Wasm (no native code, no syscalls of its own); and the
# system-call filter below still forbids everything @system-service lacks.
# CAP_SETUID and CAP_SETGID only let a short-lived thread take a claimant's
# filesystem ids (setfsuid, setfsgid, setgroups), so the bundle a non-root
# user named is checked with that user's rights, never the daemon's.
# CAP_DAC_READ_SEARCH: sources read root-only directories (host-dir) and
# container bundles. CAP_SYS_PTRACE: reading another uid's /proc/PID/ns
# (a rootless container's mount and user namespaces, which the agent
# checks before it serves that user's hook) needs ptrace-read access.
# The refresh child (`privy refresh-apply`, run by the agent's schedule and
# on SIGHUP) enters a container's mount namespace and writes its private
# tmpfs through a detached copy: setns (CAP_SYS_ADMIN, CAP_SYS_CHROOT),
# open_tree/move_mount/mount_setattr/fspick (CAP_SYS_ADMIN, @mount), files
# in the container user's directories with that user as owner (CAP_CHOWN,
# CAP_FOWNER, CAP_DAC_OVERRIDE). Only that child, single-threaded with an
# empty environment, uses them; it may join mount namespaces and no other.
CapabilityBoundingSet=CAP_IPC_LOCK CAP_DAC_READ_SEARCH CAP_SETUID CAP_SETGID CAP_SYS_PTRACE CAP_SYS_ADMIN CAP_SYS_CHROOT CAP_CHOWN CAP_FOWNER CAP_DAC_OVERRIDE
LockPersonality=yes
RestrictNamespaces=mnt
RestrictRealtime=yes
RestrictSUIDSGID=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service @mount
SystemCallErrorNumber=EPERM
UMask=0077
# A restart loses every upload, by design: containers that need one fail
# closed. Containers without one are served in the hook's own process
# while the agent is away.
Restart=on-failure

[Install]
WantedBy=multi-user.target
"#
    );
    [
        (SYSTEMD_UNITS[0], socket_unit),
        (SYSTEMD_UNITS[1], service_unit),
    ]
}

/// Write (or remove) the systemd units in `dir`.
pub fn systemd(
    dir: &Path,
    binary: &Path,
    config: Option<&Path>,
    socket: &Path,
    cache: &Path,
    uninstall: bool,
) -> Result<Vec<PathBuf>, InstallError> {
    let units = systemd_units(binary, config, socket, cache);
    let files: Vec<PathBuf> = units.iter().map(|(n, _)| dir.join(n)).collect();
    if uninstall {
        remove_all(&files)?;
        return Ok(files);
    }
    check_binary(binary)?;
    std::fs::create_dir_all(dir).map_err(|e| ferr(dir, e))?;
    for (f, (_, text)) in files.iter().zip(units.iter()) {
        write_atomic(f, text.as_bytes())?;
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| ferr(f, e))?;
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_binary(dir: &Path) -> PathBuf {
        let b = dir.join("privy");
        std::fs::write(&b, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o755)).unwrap();
        b
    }

    #[test]
    fn bundle_install_is_idempotent_and_uninstall_restores() {
        let d = tempfile::tempdir().unwrap();
        let bin = fake_binary(d.path());
        let orig = json!({"ociVersion":"1.0.2","root":{"path":"rootfs"},"hooks":{"poststop":[{"path":"/other"}]}});
        std::fs::write(d.path().join("config.json"), orig.to_string()).unwrap();
        bundle(d.path(), &bin, None, false).unwrap();
        bundle(d.path(), &bin, None, false).unwrap();
        let v: Value =
            serde_json::from_slice(&std::fs::read(d.path().join("config.json")).unwrap()).unwrap();
        assert_eq!(v["hooks"]["createRuntime"].as_array().unwrap().len(), 1);
        assert_eq!(v["hooks"]["poststop"].as_array().unwrap().len(), 2);
        assert_eq!(
            v["hooks"]["createRuntime"][0]["args"],
            json!(["privy", "hook", "create-runtime"])
        );
        bundle(d.path(), &bin, None, true).unwrap();
        let v: Value =
            serde_json::from_slice(&std::fs::read(d.path().join("config.json")).unwrap()).unwrap();
        assert_eq!(v, orig);
    }

    #[test]
    fn install_refuses_a_missing_binary() {
        let d = tempfile::tempdir().unwrap();
        let e = hooks_dir(d.path(), &d.path().join("nope"), None, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope") && e.contains("skipped silently"), "{e}");
        assert!(
            std::fs::read_dir(d.path()).unwrap().next().is_none(),
            "nothing written"
        );
        let e = hooks_dir(d.path(), Path::new("relative/privy"), None, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("absolute"), "{e}");
    }

    #[test]
    fn hooks_dir_writes_version_1_entries_and_uninstall_removes_them() {
        let d = tempfile::tempdir().unwrap();
        let bin = fake_binary(d.path());
        let files = hooks_dir(
            &d.path().join("hooks.d"),
            &bin,
            Some(Path::new("/etc/p.toml")),
            false,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
        assert_eq!(v["version"], "1.0.0");
        assert_eq!(v["stages"], json!(["createRuntime"]));
        assert_eq!(
            v["hook"]["args"],
            json!(["privy", "--config", "/etc/p.toml", "hook", "create-runtime"])
        );
        hooks_dir(&d.path().join("hooks.d"), &bin, None, true).unwrap();
        assert!(!files[0].exists() && !files[1].exists());
    }

    #[test]
    fn per_build_entries_give_both_hooks_exactly_the_env_asked_for() {
        let d = tempfile::tempdir().unwrap();
        let bin = fake_binary(d.path());
        let env = vec![r#"PRIVY_HOOK_ANNOTATIONS={"io.privy.stage":"build"}"#.to_string()];
        let files = write_hooks_d(&d.path().join("b"), &bin, None, &env).unwrap();
        for f in &files {
            let v: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
            assert_eq!(v["hook"]["env"], json!(env));
        }
        let plain = hooks_dir(&d.path().join("p"), &bin, None, false).unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(&plain[0]).unwrap()).unwrap();
        assert!(v["hook"].get("env").is_none());
    }
}
