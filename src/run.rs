//! `privy run` and `privy upload`: read private files as the calling user,
//! hand them to the daemon, and attach the ticket to a container.
//!
//! Files come from `--private SRC:DEST` and from the user's references in
//! `$XDG_CONFIG_HOME/privy/privy.toml` (`[[private]] src, dest`); a
//! `--private` beats a reference with the same `DEST`. The ticket reaches
//! the container as the annotation `io.privy.ticket` (podman, docker), in
//! the bundle's `config.json` (runc, crun with `--bundle`), or as the
//! container's `PRIVY_TICKET` environment variable where the engine has no
//! annotations (`buildah run`).

use crate::contract::ANNOTATION_TICKET as TICKET_ANNOTATION;
use crate::daemon::client::{Client, ClientError, OutFile};
use crate::daemon::{Created, Scope};
use crate::engines::{Command, Engine};
use crate::secret::{RelPath, Secret};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("--private {0:?}: expected SRC:DEST (SRC may be `-` for stdin)")]
    Spec(String),
    #[error("destination {dest:?}: {error}")]
    Dest {
        dest: String,
        error: crate::secret::PathError,
    },
    #[error("{0}: given twice as a destination")]
    Duplicate(String),
    #[error("{src}: {error}")]
    Read { src: String, error: std::io::Error },
    #[error("{src}: not a regular file")]
    NotFile { src: String },
    #[error("{src}: larger than limits.max_file_bytes ({max} bytes)")]
    TooLarge { src: String, max: u64 },
    #[error("`-` (stdin) may be given only once")]
    StdinTwice,
    #[error("{path}: {msg}")]
    References { path: PathBuf, msg: String },
    #[error(transparent)]
    Daemon(#[from] ClientError),
    #[error("bundle {path}: {msg}")]
    Bundle { path: PathBuf, msg: String },
    #[error("{0}: cannot run it: {1}")]
    Spawn(String, std::io::Error),
}

/// One `--private` or reference, before reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub src: String,
    pub dest: RelPath,
}

impl Spec {
    /// Parse `SRC:DEST`; without `:DEST`, the file keeps its name.
    pub fn parse(s: &str) -> Result<Spec, RunError> {
        let (src, dest) = match s.rsplit_once(':') {
            Some((src, dest)) if !src.is_empty() && !dest.is_empty() => (src, dest.to_owned()),
            Some(_) => return Err(RunError::Spec(s.into())),
            None if s == "-" || s.is_empty() => return Err(RunError::Spec(s.into())),
            None => {
                let name = Path::new(s)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .ok_or_else(|| RunError::Spec(s.into()))?;
                (s, name)
            }
        };
        let dest = RelPath::new(&dest).map_err(|error| RunError::Dest {
            dest: dest.clone(),
            error,
        })?;
        Ok(Spec {
            src: src.to_owned(),
            dest,
        })
    }
}

/// The user's references file.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct References {
    #[serde(default)]
    private: Vec<Reference>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Reference {
    src: String,
    dest: String,
    /// Skip it when `src` does not exist, instead of failing.
    #[serde(default)]
    optional: bool,
}

/// `$XDG_CONFIG_HOME/privy/privy.toml`, or `~/.config/privy/privy.toml`.
pub fn references_path() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("privy/privy.toml"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".config/privy/privy.toml"))
}

fn expand_home(src: &str, base: &Path) -> String {
    if let Some(rest) = src.strip_prefix("~/") {
        if let Some(h) = std::env::var_os("HOME") {
            return PathBuf::from(h).join(rest).display().to_string();
        }
    }
    if Path::new(src).is_absolute() {
        src.to_owned()
    } else {
        base.join(src).display().to_string()
    }
}

/// The references in `path` (none if it does not exist). Relative sources
/// are relative to the file's directory; `~/` is the home directory.
pub fn load_references(path: &Path) -> Result<Vec<Spec>, RunError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(RunError::References {
                path: path.into(),
                msg: e.to_string(),
            })
        }
    };
    let refs: References = toml::from_str(&text).map_err(|e| RunError::References {
        path: path.into(),
        msg: e.message().to_owned(),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for (i, r) in refs.private.iter().enumerate() {
        let bad = |msg: String| RunError::References {
            path: path.into(),
            msg: format!("private[{i}]: {msg}"),
        };
        let src = expand_home(&r.src, base);
        let dest = RelPath::new(&r.dest).map_err(|e| bad(format!("dest: {e}")))?;
        if r.optional && !Path::new(&src).exists() {
            continue;
        }
        out.push(Spec { src, dest });
    }
    Ok(out)
}

/// `--private` specs over references: same destination, the flag wins.
/// Duplicates among the flags themselves are an error.
pub fn merge(flags: Vec<Spec>, refs: Vec<Spec>) -> Result<Vec<Spec>, RunError> {
    let mut by_dest: BTreeMap<String, Spec> = BTreeMap::new();
    for r in refs {
        by_dest.insert(r.dest.as_str().to_owned(), r);
    }
    let mut seen = std::collections::BTreeSet::new();
    for f in flags {
        let d = f.dest.as_str().to_owned();
        if !seen.insert(d.clone()) {
            return Err(RunError::Duplicate(d));
        }
        // Anything already there is a reference: flags are unique.
        if by_dest.insert(d.clone(), f).is_some() {
            tracing::info!(dest = %d, "--private overrides the reference in the user's privy.toml");
        }
    }
    Ok(by_dest.into_values().collect())
}

/// Read every spec as the calling user, at most `max_file_bytes` each.
pub fn read_all(specs: &[Spec], max_file_bytes: u64) -> Result<Vec<OutFile>, RunError> {
    let mut stdin_used = false;
    let mut out = Vec::with_capacity(specs.len());
    for s in specs {
        let rd = |error| RunError::Read {
            src: s.src.clone(),
            error,
        };
        let (data, mode) = if s.src == "-" {
            if stdin_used {
                return Err(RunError::StdinTwice);
            }
            stdin_used = true;
            (
                read_capped(std::io::stdin().lock(), max_file_bytes, &s.src)?,
                0o400,
            )
        } else {
            let f = std::fs::File::open(&s.src).map_err(rd)?;
            let meta = f.metadata().map_err(rd)?;
            if !meta.is_file() {
                return Err(RunError::NotFile { src: s.src.clone() });
            }
            // Keep the owner's read/write bits; others get nothing by
            // default inside the container.
            let mode = (meta.mode() & 0o700).max(0o400);
            (read_capped(f, max_file_bytes, &s.src)?, mode)
        };
        out.push(OutFile {
            path: s.dest.clone(),
            data,
            mode,
        });
    }
    Ok(out)
}

fn read_capped(r: impl Read, max: u64, src: &str) -> Result<Secret, RunError> {
    let mut buf = Vec::new();
    let res = r.take(max + 1).read_to_end(&mut buf);
    let data = Secret::new(buf);
    res.map_err(|error| RunError::Read {
        src: src.into(),
        error,
    })?;
    if data.len() as u64 > max {
        return Err(RunError::TooLarge {
            src: src.into(),
            max,
        });
    }
    Ok(data)
}

/// Upload `files`.
pub fn upload(
    client: &Client,
    files: &[OutFile],
    scope: Scope,
    ttl: Option<u64>,
) -> Result<Created, RunError> {
    Ok(client.upload(files, scope, ttl)?)
}

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
    let c = Command::parse(cmd);
    c.engine != Some(Engine::Docker) || crate::engines::docker::passes_annotations(&c)
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
) -> Result<Vec<u8>, RunError> {
    let path = bundle.join("config.json");
    let bad = |msg: String| RunError::Bundle {
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
        .insert(TICKET_ANNOTATION.into(), ticket.into());
    write_config(
        &dir,
        &serde_json::to_vec_pretty(&spec).expect("json"),
        &meta,
    )
    .map_err(bad)?;
    Ok(original)
}

/// Put `bytes` back as the bundle's config.json.
pub fn restore_bundle(bundle: &Path, bytes: &[u8]) -> Result<(), RunError> {
    let path = bundle.join("config.json");
    let bad = |msg: String| RunError::Bundle {
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
    };
    crate::sys::write_atomic_at(dir, "config.json", bytes, Some(like), opts)
        .map_err(|e| e.to_string())
}

/// Run `cmd` to completion, forwarding SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2
/// to it (SIGINT and SIGQUIT from a terminal reach it directly, so privy
/// only outlives them). Returns the child's exit status.
pub fn run_child(
    cmd: &[String],
    env: Option<(&str, &str)>,
) -> Result<std::process::ExitStatus, RunError> {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Spawn(cmd[0].clone(), e))?;
    rt.block_on(async {
        let mut c = tokio::process::Command::new(&cmd[0]);
        c.args(&cmd[1..]);
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        let mut sigs = Vec::new();
        for k in [
            SignalKind::terminate(),
            SignalKind::hangup(),
            SignalKind::user_defined1(),
            SignalKind::user_defined2(),
            SignalKind::interrupt(),
            SignalKind::quit(),
        ] {
            sigs.push((
                k,
                signal(k).map_err(|e| RunError::Spawn(cmd[0].clone(), e))?,
            ));
        }
        let mut child = c.spawn().map_err(|e| RunError::Spawn(cmd[0].clone(), e))?;
        let pid = child.id().map(|p| nix::unistd::Pid::from_raw(p as i32));
        loop {
            let recv = futures_util::future::select_all(
                sigs.iter_mut()
                    .map(|(k, s)| Box::pin(async move { s.recv().await.map(|_| *k) })),
            );
            tokio::select! {
                st = child.wait() => return st.map_err(|e| RunError::Spawn(cmd[0].clone(), e)),
                (got, _, _) = recv => {
                    let Some(kind) = got else { continue };
                    let forward = kind != SignalKind::interrupt() && kind != SignalKind::quit();
                    if let (true, Some(pid)) = (forward, pid) {
                        if let Ok(sig) = nix::sys::signal::Signal::try_from(kind.as_raw_value()) {
                            let _ = nix::sys::signal::kill(pid, sig);
                        }
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn specs_parse_and_refuse_escapes() {
        let s = Spec::parse("./k:ssh/id").unwrap();
        assert_eq!((s.src.as_str(), s.dest.as_str()), ("./k", "ssh/id"));
        assert_eq!(
            Spec::parse("/a/b/api.key").unwrap().dest.as_str(),
            "api.key"
        );
        assert_eq!(Spec::parse("-:tok").unwrap().src, "-");
        for bad in ["-", ":x", "x:", "a:../x", "a:/abs", ""] {
            assert!(Spec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_beat_references_and_duplicates_are_refused() {
        let f = |s: &str| Spec::parse(s).unwrap();
        let m = merge(vec![f("a:k")], vec![f("r:k"), f("r2:other")]).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m.iter().find(|s| s.dest.as_str() == "k").unwrap().src, "a");
        assert!(matches!(
            merge(vec![f("a:k"), f("b:k")], vec![]),
            Err(RunError::Duplicate(_))
        ));
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
