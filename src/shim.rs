//! `privy shim`: an OCI runtime wrapper for engines that take a runtime
//! binary but no hooks directory (Docker's `runtimes`, containerd's
//! `runc-binary`). On `create` (and `run`) it adds privy's hooks to the
//! bundle's `config.json`, then execs the real runtime with the very same
//! arguments; every other verb goes straight through.
//!
//! Docker (`/etc/docker/daemon.json`):
//!
//! ```json
//! { "runtimes": { "privy": { "path": "/usr/local/bin/privy",
//!     "runtimeArgs": ["shim", "--runtime-path", "/usr/bin/runc", "--"] } } }
//! ```
//!
//! then `docker run --runtime privy ...`. Where no arguments can be given
//! (`ctr run --runc-binary`), link the binary as `privy-shim`: called by
//! that name it is the shim, with the runtime from `PRIVY_RUNTIME_PATH`
//! (default `runc`).

use std::path::{Path, PathBuf};

/// runc's global flags that take a value.
const GLOBAL_VALUE_FLAGS: &[&str] = &["--root", "--log", "--log-format", "--criu", "--rootless"];

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("shim: no runtime arguments")]
    NoArgs,
    #[error("shim: {verb} --bundle {bundle}: {msg}")]
    Install {
        verb: String,
        bundle: PathBuf,
        msg: String,
    },
    #[error("shim: cannot exec {runtime}: {error}")]
    Exec {
        runtime: PathBuf,
        error: std::io::Error,
    },
}

/// The verb and, for `create`/`run`, the bundle directory.
pub fn parse(args: &[String]) -> Option<(String, Option<PathBuf>)> {
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a.starts_with('-') {
            if !a.contains('=') && GLOBAL_VALUE_FLAGS.contains(&a.as_str()) {
                i += 1;
            }
            i += 1;
            continue;
        }
        break;
    }
    let verb = args.get(i)?.clone();
    if verb != "create" && verb != "run" {
        return Some((verb, None));
    }
    let rest = &args[i + 1..];
    let mut bundle = None;
    let mut j = 0;
    while j < rest.len() {
        let a = rest[j].as_str();
        if a == "--bundle" || a == "-b" {
            bundle = rest.get(j + 1).map(PathBuf::from);
            j += 2;
            continue;
        }
        if let Some(v) = a
            .strip_prefix("--bundle=")
            .or_else(|| a.strip_prefix("-b="))
        {
            bundle = Some(PathBuf::from(v));
        }
        j += 1;
    }
    // The OCI runtime CLI defaults the bundle to the working directory.
    Some((verb, Some(bundle.unwrap_or_else(|| PathBuf::from(".")))))
}

/// Add the hooks where needed, then become the real runtime.
pub fn exec(
    runtime: &Path,
    args: &[String],
    binary: &Path,
    config: Option<&Path>,
) -> Result<std::convert::Infallible, ShimError> {
    use std::os::unix::process::CommandExt;
    if args.is_empty() {
        return Err(ShimError::NoArgs);
    }
    // No verb (`--version`, `--help`): straight through.
    if let Some((verb, Some(bundle))) = parse(args) {
        if is_sandbox_bundle(&bundle) {
            tracing::debug!(bundle = %bundle.display(), "shim: a pod's sandbox container gets no hooks");
        } else {
            crate::oci::install::bundle(&bundle, binary, config, false).map_err(|e| {
                ShimError::Install {
                    verb: verb.clone(),
                    bundle: bundle.clone(),
                    msg: e.to_string(),
                }
            })?;
            tracing::debug!(bundle = %bundle.display(), "shim added privy's hooks");
        }
    }
    let error = std::process::Command::new(runtime).args(args).exec();
    Err(ShimError::Exec {
        runtime: runtime.to_owned(),
        error,
    })
}

/// Whether the bundle is a Kubernetes pod's sandbox ("pause") container,
/// which gets no private files (`plan` skips it too): it then gets no
/// hooks at all, which saves two hook runs per pod start. A bundle whose
/// `config.json` cannot be read is not one; installing the hooks then
/// fails as before.
fn is_sandbox_bundle(bundle: &Path) -> bool {
    crate::oci::Spec::load(bundle).is_ok_and(|s| crate::pod::is_sandbox(&s.annotations))
}

#[cfg(test)]
mod tests {
    use super::parse;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn docker_style_global_flags_come_before_the_verb() {
        let (verb, b) = parse(&v(
            "--root /var/run/docker/runtime-runc/moby --log /x/log.json --log-format json --systemd-cgroup create --bundle /b/1 --pid-file /p id1",
        ))
        .unwrap();
        assert_eq!(
            (verb.as_str(), b.unwrap().to_str().unwrap()),
            ("create", "/b/1")
        );
        let (_, b) = parse(&v("create -b=/b/2 id")).unwrap();
        assert_eq!(b.unwrap().to_str().unwrap(), "/b/2");
        let (_, b) = parse(&v("run id")).unwrap();
        assert_eq!(b.unwrap().to_str().unwrap(), ".");
        assert_eq!(
            parse(&v("--root /r start id")).unwrap(),
            ("start".into(), None)
        );
        assert_eq!(parse(&v("--version")), None);
    }

    #[test]
    fn pod_sandbox_bundles_are_recognised_and_anything_else_is_not() {
        let d = tempfile::tempdir().unwrap();
        let write = |annotations: &str| {
            std::fs::write(
                d.path().join("config.json"),
                format!(r#"{{"root":{{"path":"rootfs"}},"annotations":{annotations}}}"#),
            )
            .unwrap()
        };
        assert!(!super::is_sandbox_bundle(d.path()), "no config.json");
        write(r#"{"io.kubernetes.cri.container-type":"sandbox"}"#);
        assert!(super::is_sandbox_bundle(d.path()));
        write(r#"{"io.kubernetes.cri-o.ContainerType":"sandbox"}"#);
        assert!(super::is_sandbox_bundle(d.path()));
        write(r#"{"io.kubernetes.cri.container-type":"container"}"#);
        assert!(!super::is_sandbox_bundle(d.path()));
        write("{}");
        assert!(!super::is_sandbox_bundle(d.path()));
    }
}
