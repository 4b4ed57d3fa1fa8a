//! `host-dir`: privy's default source.
//!
//! Returns every regular file under one granted host directory (config key
//! `dir`, default `/etc/privy/private.d`), recursively, as paths relative to
//! it. Modes are kept minus setuid, setgid, sticky and execute bits. Symlinks
//! are followed only while they stay inside the directory; one that points
//! outside is refused, and so the whole fetch fails, since a half-delivered
//! set of entitlement files is worse than a clear error.

use privy_plugin::{PrivateFile, Request, Source, SourceError};
use std::fs;
use std::path::Path;

/// Deepest directory nesting followed; also stops symlink loops.
const MAX_DEPTH: usize = 32;

struct HostDir;

impl Source for HostDir {
    fn fetch(req: Request) -> Result<Vec<PrivateFile>, SourceError> {
        let dir = privy_plugin::config("dir").unwrap_or_else(|| "/etc/privy/private.d".into());
        let root = Path::new(&dir);
        match fs::metadata(root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(SourceError::InvalidConfig(format!(
                    "{dir} is not a directory"
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // No directory means no host files: an empty set, not an error.
                privy_plugin::debug(&format!("{dir} does not exist; nothing to inject"));
                return Ok(Vec::new());
            }
            Err(e) => {
                return Err(SourceError::Unavailable(format!(
                    "cannot open {dir}: {e} (is it in grant.dirs?)"
                )))
            }
        }
        let mut out = Vec::new();
        walk(root, "", 0, &mut out)?;
        if !req.names.is_empty() {
            out.retain(|f| req.names.contains(&f.path));
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}

fn walk(
    dir: &Path,
    rel: &str,
    depth: usize,
    out: &mut Vec<PrivateFile>,
) -> Result<(), SourceError> {
    if depth > MAX_DEPTH {
        return Err(SourceError::Other(format!(
            "{rel}: nested deeper than {MAX_DEPTH} directories (symlink loop?)"
        )));
    }
    let entries = fs::read_dir(dir)
        .map_err(|e| SourceError::Unavailable(format!("cannot list {}: {e}", dir.display())))?;
    let mut names: Vec<(String, fs::FileType)> = Vec::new();
    for entry in entries {
        let entry = entry
            .map_err(|e| SourceError::Unavailable(format!("cannot list {}: {e}", dir.display())))?;
        let ty = entry
            .file_type()
            .map_err(|e| SourceError::Unavailable(format!("cannot list {}: {e}", dir.display())))?;
        match entry.file_name().into_string() {
            Ok(n) => names.push((n, ty)),
            Err(n) => {
                return Err(SourceError::Other(format!(
                    "{rel}/{}: file name is not UTF-8",
                    n.to_string_lossy()
                )))
            }
        }
    }
    names.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, ty) in names {
        let path = dir.join(&name);
        let child = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        // The directory entry's type spares a stat for the common case.
        let is_dir = if ty.is_symlink() {
            // The sandbox resolves symlinks only inside the granted directory,
            // so a failure to follow one means it leads outside (or nowhere).
            match fs::metadata(&path) {
                Ok(m) if m.is_dir() => true,
                Ok(m) if m.is_file() => false,
                Ok(_) => {
                    privy_plugin::debug(&format!("{child}: not a regular file; skipped"));
                    continue;
                }
                Err(_) => {
                    return Err(SourceError::Denied(format!(
                        "{child}: symlink points outside the granted directory {} (or is dangling); refusing",
                        dir.display()
                    )))
                }
            }
        } else if ty.is_dir() {
            true
        } else if ty.is_file() {
            false
        } else {
            privy_plugin::debug(&format!("{child}: not a regular file; skipped"));
            continue;
        };
        if is_dir {
            walk(&path, &child, depth + 1, out)?;
        } else {
            let data =
                fs::read(&path).map_err(|e| SourceError::Unavailable(format!("{child}: {e}")))?;
            let host_path = path.to_str().unwrap_or_default();
            let mode = privy_plugin::file_mode(host_path)
                .map_err(|e| SourceError::Unavailable(format!("{child}: {e}")))?;
            out.push(PrivateFile {
                path: child,
                data,
                mode: Some(mode & 0o666),
            });
        }
    }
    Ok(())
}

privy_plugin::export_source!(HostDir);
