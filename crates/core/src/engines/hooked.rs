//! Whether an engine will run privy's hook for the container a command
//! starts, asked before `privy run` starts it: without the hook the
//! container starts anyway, finds no files, and the upload waits in the
//! daemon for nothing. So `privy run` refuses with the command that fixes
//! it. Per engine:
//!
//! - podman: a privy `createRuntime` entry in the hooks.d directories it
//!   reads (`--hooks-dir`, else containers.conf's `hooks_dir`, else
//!   `/usr/share/containers/oci/hooks.d` and `/etc/containers/oci/hooks.d`);
//! - docker: the runtime the container gets (`--runtime`, else the
//!   daemon's default, asked with `docker info`) is privy;
//! - ctr: `--runc-binary` is privy (`privy-shim`); ctr reads no runtime
//!   binary from containerd's config, so there is no other way.
//!
//! What cannot be seen from here (a remote podman, a daemon that does not
//! answer) is not refused: the check after the container started
//! (`privy run` asks the daemon whether the ticket was claimed) still
//! catches it.

use super::{argv, Command, Engine};
use std::path::{Path, PathBuf};

/// Why the engine will not run privy's hook, and what fixes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{engine} will not run privy's hook ({why}), so the container would start without its private files; {fix}")]
pub struct NotHooked {
    pub engine: &'static str,
    pub why: String,
    pub fix: String,
}

/// Check that `cmd`'s engine will run privy's hook for the container it
/// starts; `Ok` for commands that start none, or whose engine privy cannot
/// ask.
pub fn check(cmd: &Command) -> Result<(), NotHooked> {
    let (Some(engine), Some(verb)) = (cmd.engine, cmd.verb()) else {
        return Ok(());
    };
    match (engine, verb) {
        (Engine::Podman, "run" | "create") => podman(cmd),
        (Engine::Docker, "run" | "create") => docker(cmd),
        (Engine::Ctr, "run") => ctr(cmd),
        _ => Ok(()),
    }
}

fn podman(cmd: &Command) -> Result<(), NotHooked> {
    let globals = cmd.globals();
    let remote = argv::has_flag(
        globals,
        super::podman::GLOBAL_VALUE_FLAGS,
        &["--remote", "-r", "--url", "--connection", "-c"],
    ) || std::env::var_os("CONTAINER_HOST").is_some();
    if remote {
        // The server's hooks.d is not this machine's to look at.
        return Ok(());
    }
    // podman takes `--hooks-dir` before the verb or among its options.
    let mut given = argv::flag_values(globals, "--hooks-dir", None);
    given.extend(cmd.option_values("--hooks-dir", None));
    let (dirs, whence) = if !given.is_empty() {
        (given.iter().map(PathBuf::from).collect(), "--hooks-dir")
    } else if let Some(d) = containers_conf_hooks_dirs() {
        (d, "containers.conf's hooks_dir")
    } else {
        (
            super::buildah::DEFAULT_HOOKS_DIRS
                .iter()
                .map(PathBuf::from)
                .collect::<Vec<_>>(),
            "podman's default hooks.d directories",
        )
    };
    if dirs.iter().any(|d| has_privy_entry(d)) {
        return Ok(());
    }
    let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    Err(NotHooked {
        engine: "podman",
        why: format!("no privy entry in {whence} {}", shown.join(", ")),
        fix: format!(
            "install them with `privy install --hooks-dir {}`, or give podman `--hooks-dir DIR` with privy's entries",
            dirs.first()
                .map_or(super::buildah::DEFAULT_HOOKS_DIRS[0].into(), |d| d
                    .display()
                    .to_string()),
        ),
    })
}

/// The `[engine] hooks_dir` podman reads from containers.conf, when one
/// sets it: `$CONTAINERS_CONF` alone when set, else the system files and
/// then the user's (later ones win, as in podman).
fn containers_conf_hooks_dirs() -> Option<Vec<PathBuf>> {
    let files: Vec<PathBuf> = match std::env::var_os("CONTAINERS_CONF") {
        Some(p) => vec![p.into()],
        None => {
            let mut f = vec![
                PathBuf::from("/usr/share/containers/containers.conf"),
                PathBuf::from("/etc/containers/containers.conf"),
            ];
            if let Ok(rd) = std::fs::read_dir("/etc/containers/containers.conf.d") {
                let mut more: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
                more.sort();
                f.extend(more);
            }
            let user = std::env::var_os("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")));
            f.extend(user.map(|u| u.join("containers/containers.conf")));
            f
        }
    };
    let mut dirs = None;
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let Ok(v) = text.parse::<toml::Table>() else {
            continue;
        };
        if let Some(list) = v
            .get("engine")
            .and_then(|e| e.get("hooks_dir"))
            .and_then(|h| h.as_array())
        {
            dirs = Some(
                list.iter()
                    .filter_map(|d| d.as_str().map(PathBuf::from))
                    .collect(),
            );
        }
    }
    dirs
}

/// Whether `dir` holds a hooks.d entry that runs privy's `createRuntime`
/// hook (by privy's file name, or any entry whose hook is `... hook
/// create-runtime` at that stage).
fn has_privy_entry(dir: &Path) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return false;
    };
    rd.flatten().any(|e| {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "json") {
            return false;
        }
        let Ok(text) = std::fs::read(&p) else {
            return false;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&text) else {
            return false;
        };
        let stage = v["stages"]
            .as_array()
            .is_some_and(|s| s.iter().any(|x| x == "createRuntime"));
        let args: Vec<&str> = v["hook"]["args"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        stage
            && args
                .windows(2)
                .any(|w| w == ["hook", crate::contract::HOOK_CREATE_RUNTIME])
    })
}

fn docker(cmd: &Command) -> Result<(), NotHooked> {
    let named = cmd.option_values("--runtime", None).pop();
    let out = std::process::Command::new(&cmd.argv[0])
        .args(cmd.globals())
        .args([
            "info",
            "--format",
            "{{.DefaultRuntime}}\t{{json .Runtimes}}",
        ])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    let Ok(out) = out.map_err(drop).and_then(|o| {
        if o.status.success() {
            Ok(o.stdout)
        } else {
            Err(())
        }
    }) else {
        // No daemon to ask: `docker run` fails on its own.
        return Ok(());
    };
    let text = String::from_utf8_lossy(&out);
    let (default, runtimes) = text.trim().split_once('\t').unwrap_or((text.trim(), "{}"));
    let runtimes: serde_json::Value = serde_json::from_str(runtimes).unwrap_or_default();
    let used = named.clone().unwrap_or_else(|| default.to_owned());
    let path = runtimes[&used]["path"].as_str().unwrap_or("");
    if is_privy(path) {
        return Ok(());
    }
    let privy_names: Vec<&String> = runtimes
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, r)| r["path"].as_str().is_some_and(is_privy))
                .map(|(n, _)| n)
                .collect()
        })
        .unwrap_or_default();
    let why = match &named {
        Some(n) => format!("its runtime `{n}` is {}", shown_path(path)),
        None => format!(
            "the daemon's default runtime `{used}` is {}",
            shown_path(path)
        ),
    };
    let fix = match privy_names.first() {
        Some(n) => format!("add `--runtime {n}` after `{}`", cmd.verb().unwrap_or("run")),
        None => "configure privy as a runtime of the Docker daemon (`dockerd --add-runtime privy=/usr/local/bin/privy`, or \"runtimes\" in /etc/docker/daemon.json) and add `--runtime privy`".into(),
    };
    Err(NotHooked {
        engine: "docker",
        why,
        fix,
    })
}

fn ctr(cmd: &Command) -> Result<(), NotHooked> {
    let binary = cmd.option_values("--runc-binary", None).pop();
    if binary.as_deref().is_some_and(is_privy) {
        return Ok(());
    }
    Err(NotHooked {
        engine: "ctr",
        why: match binary {
            Some(b) => format!("its --runc-binary {b} is not privy"),
            None => "it runs plain runc".into(),
        },
        fix: format!(
            "add `--runc-binary /usr/local/bin/{}` (a link to privy) after `run`",
            crate::contract::SHIM_ARGV0
        ),
    })
}

fn shown_path(path: &str) -> String {
    if path.is_empty() {
        "not privy".into()
    } else {
        format!("{path}, not privy")
    }
}

/// Whether the runtime binary `path` (absolute, or found on `PATH`) is
/// privy: named `privy` or `privy-shim`, or the very file this process
/// runs from.
pub fn is_privy(path: &str) -> bool {
    if path.is_empty() {
        return false;
    }
    let name = Path::new(path).file_name().and_then(|n| n.to_str());
    if matches!(name, Some("privy") | Some(crate::contract::SHIM_ARGV0)) {
        return true;
    }
    let found = if path.contains('/') {
        Some(PathBuf::from(path))
    } else {
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(path))
                .find(|c| c.is_file())
        })
    };
    let me = std::env::current_exe().and_then(|p| p.canonicalize()).ok();
    match (found.and_then(|f| f.canonicalize().ok()), me) {
        (Some(f), Some(me)) => f == me,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn podman_hooks_dir_after_the_verb_counts_as_before_it() {
        // podman takes its global flags after the verb too; the rootless
        // tests (and users) write `podman run --hooks-dir DIR ...`.
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().display().to_string();
        let entry = serde_json::json!({"version": "1.0.0", "hook": {"path": "/x/privy", "args": ["privy", "hook", "create-runtime"]}, "when": {"always": true}, "stages": ["createRuntime"]});
        std::fs::write(d.path().join("privy.json"), entry.to_string()).unwrap();
        for line in [
            format!("podman run --rm --network none --hooks-dir {dir} img cat /x"),
            format!("podman run --hooks-dir={dir} -d img"),
            format!("podman container create --name n --hooks-dir {dir} img"),
        ] {
            assert_eq!(check(&Command::parse(&v(&line))), Ok(()), "{line}");
        }
        // Not when it is the container's own argument.
        let inner = Command::parse(&v(&format!("podman run img prog --hooks-dir {dir}")));
        if crate::engines::buildah::DEFAULT_HOOKS_DIRS
            .iter()
            .all(|d| !has_privy_entry(std::path::Path::new(d)))
        {
            assert!(check(&inner).is_err());
        }
        // The value of --hooks-dir is not the image.
        let c = Command::parse(&v(&format!("podman run --hooks-dir {dir} --rm img")));
        assert!(c.has_flag(&["--rm"]));
    }

    #[test]
    fn podman_reads_the_hooks_dirs_it_is_given() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().display().to_string();
        let cmd = Command::parse(&v(&format!("podman --hooks-dir {dir} run --rm img")));
        let e = check(&cmd).unwrap_err();
        assert_eq!(e.engine, "podman");
        assert!(
            e.to_string()
                .contains(&format!("privy install --hooks-dir {dir}")),
            "{e}"
        );
        let entry = serde_json::json!({"version": "1.0.0", "hook": {"path": "/x/privy", "args": ["privy", "hook", "create-runtime"]}, "when": {"always": true}, "stages": ["createRuntime"]});
        std::fs::write(d.path().join("other.json"), entry.to_string()).unwrap();
        assert_eq!(check(&cmd), Ok(()));
        // A poststop entry alone does not inject anything.
        std::fs::remove_file(d.path().join("other.json")).unwrap();
        let post = serde_json::json!({"hook": {"path": "/x/privy", "args": ["privy", "hook", "poststop"]}, "stages": ["poststop"]});
        std::fs::write(d.path().join("p.json"), post.to_string()).unwrap();
        assert!(check(&cmd).is_err());
        // Remote podman and verbs that start nothing are not checked.
        let remote = Command::parse(&v(&format!("podman --remote --hooks-dir {dir} run img")));
        assert_eq!(check(&remote), Ok(()));
        assert_eq!(check(&Command::parse(&v("podman ps"))), Ok(()));
        assert_eq!(check(&Command::parse(&v("sh -c true"))), Ok(()));
    }

    #[test]
    fn ctr_needs_privy_as_its_runc_binary() {
        let e = check(&Command::parse(&v("ctr run --rm img id"))).unwrap_err();
        assert!(
            e.to_string()
                .contains("--runc-binary /usr/local/bin/privy-shim"),
            "{e}"
        );
        let ok = Command::parse(&v("ctr -n x run --rm --runc-binary /opt/privy-shim img id"));
        assert_eq!(check(&ok), Ok(()));
        // A `--runc-binary` in the container's command is not ctr's.
        let cmd = Command::parse(&v("ctr run --rm img id sh --runc-binary /opt/privy-shim"));
        assert!(check(&cmd).is_err());
        assert!(is_privy("/usr/local/bin/privy"));
        assert!(!is_privy("/usr/bin/runc"));
        assert!(!is_privy(""));
    }
}
