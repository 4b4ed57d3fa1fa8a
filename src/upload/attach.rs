//! How a ticket reaches the container: on the engine's command line
//! (`engines::Command::attach_ticket`), in a bundle's `config.json` (runc,
//! crun with `--bundle`, restored afterwards), or only in the command's
//! environment.

use super::UploadError;
use crate::contract::ANNOTATION_TICKET;
use crate::engines::Command;
use std::path::Path;

/// How the ticket reaches the container for a given command.
#[derive(Debug, PartialEq)]
pub enum Route {
    /// Arguments were added to the command line.
    Args {
        /// The container is gone when the command exits (`--rm`, `runc run`),
        /// so the ticket can be deleted then.
        ephemeral: bool,
    },
    /// The bundle's config.json carries the annotation.
    Bundle,
    /// Only `PRIVY_TICKET` in the command's environment.
    Env,
}

/// Add the ticket to `cmd` where its engine takes it ([`crate::engines`]).
/// `annotations` says whether a Docker engine passes annotations on.
pub fn attach(cmd: &mut Vec<String>, ticket: &str, annotations: bool) -> Route {
    let mut c = Command::parse(cmd);
    match c.attach_ticket(ticket, annotations) {
        Some(ephemeral) => {
            *cmd = c.argv;
            Route::Args { ephemeral }
        }
        None => Route::Env,
    }
}

/// Whether the engine `cmd` runs passes a ticket annotation on to the
/// runtime: every engine privy attaches one for, except a Docker daemon
/// older than API 1.43, which drops it (the ticket then goes in `--env`).
pub fn passes_annotations(cmd: &[String]) -> bool {
    Command::parse(cmd).annotations_reach_runtime()
}

/// Whether `cmd` is a foreground `runc|crun run` (the container is deleted
/// when it exits).
pub fn is_foreground_runtime_run(cmd: &[String]) -> bool {
    crate::engines::runtime::is_foreground_run(&Command::parse(cmd))
}

/// Largest `config.json` privy reads from a bundle.
const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Put the ticket (and privy's hooks, if missing) into `bundle/config.json`.
/// Returns the original bytes, to restore when the command is over.
///
/// Every read and write goes through one descriptor of the bundle
/// directory and never follows a symlink: `privy run` often runs as root on
/// a bundle someone else can write to, and a planted link must neither
/// redirect the write (`config.json.privy-tmp -> /victim`) nor make privy
/// copy another file's bytes into the bundle (`config.json -> /root/x`) (B8).
pub fn attach_bundle(
    bundle: &Path,
    ticket: &str,
    binary: &Path,
    config: Option<&Path>,
) -> Result<Vec<u8>, UploadError> {
    let path = bundle.join("config.json");
    let bad = |msg: String| UploadError::Bundle {
        path: path.clone(),
        msg,
    };
    let dir = open_bundle(bundle).map_err(|e| bad(e.to_string()))?;
    let (original, _) = read_config(&dir).map_err(bad)?;
    crate::oci::install::bundle(bundle, binary, config, false).map_err(|e| bad(e.to_string()))?;
    let (text, meta) = read_config(&dir).map_err(bad)?;
    let mut spec: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    let obj = spec
        .as_object_mut()
        .ok_or_else(|| bad("not a JSON object".into()))?;
    let ann = obj
        .entry("annotations")
        .or_insert_with(|| serde_json::json!({}));
    ann.as_object_mut()
        .ok_or_else(|| bad("annotations is not an object".into()))?
        .insert(ANNOTATION_TICKET.into(), ticket.into());
    write_config(
        &dir,
        &serde_json::to_vec_pretty(&spec).expect("json"),
        &meta,
    )
    .map_err(bad)?;
    Ok(original)
}

/// Put `bytes` back as the bundle's config.json.
pub fn restore_bundle(bundle: &Path, bytes: &[u8]) -> Result<(), UploadError> {
    let path = bundle.join("config.json");
    let bad = |msg: String| UploadError::Bundle {
        path: path.clone(),
        msg,
    };
    let dir = open_bundle(bundle).map_err(|e| bad(e.to_string()))?;
    let (_, meta) = read_config(&dir).map_err(bad)?;
    write_config(&dir, bytes, &meta).map_err(bad)
}

/// The bundle directory, pinned: whatever is renamed or linked in its place
/// later, privy keeps working in the directory it opened.
fn open_bundle(bundle: &Path) -> std::io::Result<std::os::fd::OwnedFd> {
    crate::sys::open_dir_path(bundle)
}

fn read_config(dir: &std::os::fd::OwnedFd) -> Result<(Vec<u8>, std::fs::Metadata), String> {
    use std::os::fd::AsRawFd;
    crate::sys::read_regular_at(dir.as_raw_fd(), "config.json", MAX_CONFIG_BYTES)
        .map_err(|e| e.to_string())
}

fn write_config(
    dir: &std::os::fd::OwnedFd,
    bytes: &[u8],
    like: &std::fs::Metadata,
) -> Result<(), String> {
    let opts = crate::sys::WriteOpts {
        mode: None,
        sync: true,
        replace_only: false,
    };
    crate::sys::write_atomic_at(dir, "config.json", bytes, Some(like), opts)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn ticket_goes_after_the_verb_past_global_flags() {
        let mut c = v("podman --runtime runc --log-level=debug run --rm -it img sh");
        assert_eq!(attach(&mut c, "T", true), Route::Args { ephemeral: true });
        assert_eq!(
            c,
            v("podman --runtime runc --log-level=debug run --annotation io.privy.ticket=T --rm -it img sh")
        );
        let mut c = v("docker container create img");
        assert_eq!(attach(&mut c, "T", true), Route::Args { ephemeral: false });
        assert_eq!(c[3], "--annotation");
        let mut c = v("podman run -d --rm img");
        assert_eq!(attach(&mut c, "T", true), Route::Args { ephemeral: false });
        let mut c = v("/usr/bin/podman ps");
        assert_eq!(attach(&mut c, "T", true), Route::Env);
        assert_eq!(c, v("/usr/bin/podman ps"));
        let mut c = v("buildah run ctr cat /run/private/k");
        assert_eq!(attach(&mut c, "T", true), Route::Args { ephemeral: true });
        assert_eq!(c[2..4], v("--env PRIVY_TICKET=T")[..]);
        let mut c = v("docker run --rm img");
        assert_eq!(attach(&mut c, "T", false), Route::Args { ephemeral: true });
        assert_eq!(c[2..4], v("--env PRIVY_TICKET=T")[..]);
        let mut c = v("sh -c true");
        assert_eq!(attach(&mut c, "T", true), Route::Env);
        assert!(is_foreground_runtime_run(&v("runc --root /x run -b b c1")));
        assert!(!is_foreground_runtime_run(&v("runc run -d -b b c1")));
        assert!(!is_foreground_runtime_run(&v("runc create c1")));
    }
}
