//! `privy shim`: an OCI runtime wrapper for engines that take a runtime
//! binary but no hooks directory (Docker's `runtimes`, containerd's
//! `runc-binary`). On `create` (and `run`) it adds privy's hooks to the
//! bundle's `config.json`, then execs the real runtime with the very same
//! arguments; every other verb goes straight through.
//!
//! Docker: `dockerd --add-runtime privy=/usr/local/bin/privy` (or
//! `/etc/docker/daemon.json`: `{"runtimes": {"privy": {"path":
//! "/usr/local/bin/privy"}}}`), then `docker run --runtime privy ...`:
//! called with runc's command line (`--root ... create ...`), the binary is
//! the shim (`engines::runtime::called_as_runtime`). Where no arguments
//! can be given (`ctr run --runc-binary`), link the binary as `privy-shim`:
//! called by that name it is the shim too. Either way the real runtime is
//! `PRIVY_RUNTIME_PATH`, else the config's `[shim] runtime`, else `runc`
//! on `PATH`; `privy shim --runtime-path R -- ARGS` names it explicitly. How a runtime call reads
//! is `engines::runtime`'s business.

use std::path::{Path, PathBuf};

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
    if let Some((verb, Some(bundle))) = crate::engines::runtime::parse_call(args) {
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
    crate::oci::Spec::load(bundle).is_ok_and(|s| crate::engines::cri::is_sandbox(&s.annotations))
}

#[cfg(test)]
mod tests {
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
