//! What the user asked to upload: `--private SRC:DEST` flags, and the
//! references in their own `$XDG_CONFIG_HOME/privy/privy.toml`
//! (`[[private]] src, dest, optional`), merged (a flag beats a reference
//! with the same `DEST`).

use super::UploadError;
use crate::secret::RelPath;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One `--private` or reference, before reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub src: String,
    pub dest: RelPath,
}

impl Spec {
    /// Parse `SRC:DEST`; without `:DEST`, the file keeps its name.
    pub fn parse(s: &str) -> Result<Spec, UploadError> {
        let (src, dest) = match s.rsplit_once(':') {
            Some((src, dest)) if !src.is_empty() && !dest.is_empty() => (src, dest.to_owned()),
            Some(_) => return Err(UploadError::Spec(s.into())),
            None if s == "-" || s.is_empty() => return Err(UploadError::Spec(s.into())),
            None => {
                let name = Path::new(s)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .ok_or_else(|| UploadError::Spec(s.into()))?;
                (s, name)
            }
        };
        let dest = RelPath::new(&dest).map_err(|error| UploadError::Dest {
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
pub fn load_references(path: &Path) -> Result<Vec<Spec>, UploadError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(UploadError::References {
                path: path.into(),
                msg: e.to_string(),
            })
        }
    };
    let refs: References = toml::from_str(&text).map_err(|e| UploadError::References {
        path: path.into(),
        msg: e.message().to_owned(),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for (i, r) in refs.private.iter().enumerate() {
        let bad = |msg: String| UploadError::References {
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
pub fn merge(flags: Vec<Spec>, refs: Vec<Spec>) -> Result<Vec<Spec>, UploadError> {
    let mut by_dest: BTreeMap<String, Spec> = BTreeMap::new();
    for r in refs {
        by_dest.insert(r.dest.as_str().to_owned(), r);
    }
    let mut seen = std::collections::BTreeSet::new();
    for f in flags {
        let d = f.dest.as_str().to_owned();
        if !seen.insert(d.clone()) {
            return Err(UploadError::Duplicate(d));
        }
        // Anything already there is a reference: flags are unique.
        if by_dest.insert(d.clone(), f).is_some() {
            tracing::info!(dest = %d, "--private overrides the reference in the user's privy.toml");
        }
    }
    Ok(by_dest.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

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
            Err(UploadError::Duplicate(_))
        ));
    }
}
