//! Stage four: leak rules on what the plugins returned, before anything
//! touches the container. Names must be clean relative paths (L4), sizes and
//! counts within limits, modes stripped of execute and special bits, no path
//! twice from one source, and no file where another needs a directory.
//! Where two sources give the same path, the higher precedence wins (an
//! upload beats user references, which beat operator sources, which beat
//! the host directory; on a tie, the later source), and the override is
//! reported by name.
//!
//! When the container named the files it wants (`io.privy.names`), the
//! narrowing happens here, on the host, whatever each plugin did with the
//! request: a plugin that ignores `names`, and uploads, which no plugin
//! filters, cannot hand the container more than it asked for (B18). What
//! was dropped is reported by name, for the audit event.
//!
//! A source may say when its data expires (`privy:source/expiry`); the
//! host clamps what it says ([`clamp_expiry`]) and the request's expiry is
//! the earliest of its sources' ([`Checked::expires`]).

use crate::config::{Limits, Precedence};
use crate::secret::{PathError, RelPath, Secret};
use std::collections::{BTreeMap, BTreeSet};

/// One file as a plugin returned it, not yet checked.
#[derive(Debug)]
pub struct RawFile {
    pub path: String,
    pub data: Secret,
    pub mode: Option<u32>,
}

/// One source's files, not yet checked: what the fetch stage hands this one.
#[derive(Debug)]
pub struct Fetched {
    pub source: String,
    pub precedence: Precedence,
    pub files: Vec<RawFile>,
    /// When this source said its data expires (unix seconds, already
    /// clamped by [`clamp_expiry`]); `None`: it did not say.
    pub expires: Option<u64>,
}

/// The furthest ahead a source's expiry is taken: a year. Further is
/// ignored (a value in milliseconds, a bogus date), not clamped: data that
/// lasts a year needs no refresh schedule from privy.
pub const MAX_EXPIRY_SECS: u64 = 365 * 86_400;

/// What the host makes of a source saying its data expires at unix second
/// `at`, `now` being the current unix second: the same second when it is
/// within a year, `now` when it is already past (fetch again at once),
/// `None` (ignored) when it is more than [`MAX_EXPIRY_SECS`] ahead.
pub fn clamp_expiry(now: u64, at: u64) -> Option<u64> {
    match at {
        at if at <= now => Some(now),
        at if at - now > MAX_EXPIRY_SECS => None,
        at => Some(at),
    }
}

/// The earlier of two expiries, either of which may be absent.
pub fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Mode given to a file whose source did not say.
pub const DEFAULT_MODE: u32 = 0o400;

/// Most components in one private path (`a/b/c.pem` has 3). Every directory
/// on the way is created on the tmpfs and costs an inode and a system call;
/// 32 is far beyond any real layout (`ci/deploy-key/id_ed25519` is 3) and
/// keeps the worst case (`limits.max_files` paths this deep) to a few
/// thousand directories, not millions (B12).
pub const MAX_DEPTH: usize = 32;

/// A file that passed every check.
#[derive(Debug)]
pub struct CheckedFile {
    pub path: RelPath,
    pub data: Secret,
    pub mode: u32,
    pub source: String,
}

/// One path given by two sources.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub path: String,
    pub winner: String,
    pub loser: String,
}

/// A file a source gave that the container did not ask for.
#[derive(Debug, Clone, PartialEq)]
pub struct Dropped {
    pub path: String,
    pub source: String,
}

/// The checked set, sorted by path.
#[derive(Debug, Default)]
pub struct Checked {
    pub files: Vec<CheckedFile>,
    pub overrides: Vec<Override>,
    /// Files left out because the container named others (`io.privy.names`).
    pub dropped: Vec<Dropped>,
    /// The earliest expiry any source that ran said its data has (unix
    /// seconds): when to fetch again. Counted for every source that
    /// answered, whether its files survived narrowing and precedence or
    /// not: a refresh re-runs them all, and refreshing early only costs a
    /// fetch.
    pub expires: Option<u64>,
}

impl Checked {
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.data.len() as u64).sum()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CheckError {
    #[error("source {name:?}: {error}")]
    Path { name: String, error: PathError },
    #[error("source {name:?}: file {path} is {size} bytes, over limits.max_file_bytes ({limit})")]
    FileTooBig {
        name: String,
        path: String,
        size: u64,
        limit: u64,
    },
    #[error("source {name:?}: returned {path} twice")]
    Duplicate { name: String, path: String },
    #[error("source {name:?}: returned {count} files, over limits.max_files ({limit})")]
    SourceTooMany {
        name: String,
        count: usize,
        limit: u32,
    },
    #[error("{count} private files in all, over limits.max_files ({limit})")]
    TooMany { count: usize, limit: u32 },
    #[error("{total} bytes of private files in all, over limits.max_total_bytes ({limit})")]
    TotalTooBig { total: u64, limit: u64 },
    #[error(
        "source {name:?}: path {path} is {depth} components deep, over the limit of {MAX_DEPTH}"
    )]
    TooDeep {
        name: String,
        path: String,
        depth: usize,
    },
    #[error("{file} (from source {file_source:?}) is a file but {dir} needs it to be a directory")]
    FileDirConflict {
        file: String,
        file_source: String,
        dir: String,
    },
}

/// Strip execute, setuid, setgid and sticky bits.
pub fn clean_mode(mode: Option<u32>) -> u32 {
    mode.map(|m| m & 0o666).unwrap_or(DEFAULT_MODE)
}

/// Apply the rules to everything fetched, in plan order, for a container
/// that asked for everything.
pub fn check(fetched: Vec<Fetched>, limits: &Limits) -> Result<Checked, CheckError> {
    check_named(fetched, limits, &[])
}

/// Apply the rules to everything fetched, in plan order, keeping only the
/// paths in `names` unless it is empty (the container's `io.privy.names`).
/// Every file is validated first, dropped or not: a source that returns a
/// bad path is broken, whatever the container asked for.
pub fn check_named(
    fetched: Vec<Fetched>,
    limits: &Limits,
    names: &[String],
) -> Result<Checked, CheckError> {
    let wanted: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let mut dropped = Vec::new();
    let expires = fetched.iter().map(|f| f.expires).fold(None, earliest);
    // Validate each source's output on its own first.
    let mut candidates: Vec<(Precedence, usize, CheckedFile)> = Vec::new();
    for (order, f) in fetched.into_iter().enumerate() {
        if f.files.len() > limits.max_files as usize {
            return Err(CheckError::SourceTooMany {
                name: f.source,
                count: f.files.len(),
                limit: limits.max_files,
            });
        }
        let mut seen = BTreeSet::new();
        for raw in f.files {
            let path = RelPath::new(&raw.path).map_err(|error| CheckError::Path {
                name: f.source.clone(),
                error,
            })?;
            let depth = path.components().count();
            if depth > MAX_DEPTH {
                return Err(CheckError::TooDeep {
                    name: f.source.clone(),
                    path: crate::shown::shown(path.as_str()),
                    depth,
                });
            }
            let size = raw.data.len() as u64;
            if size > limits.max_file_bytes {
                return Err(CheckError::FileTooBig {
                    name: f.source.clone(),
                    path: path.to_string(),
                    size,
                    limit: limits.max_file_bytes,
                });
            }
            if !seen.insert(path.clone()) {
                return Err(CheckError::Duplicate {
                    name: f.source.clone(),
                    path: path.to_string(),
                });
            }
            if !wanted.is_empty() && !wanted.contains(path.as_str()) {
                dropped.push(Dropped {
                    path: path.to_string(),
                    source: f.source.clone(),
                });
                continue;
            }
            let mode = clean_mode(raw.mode);
            candidates.push((
                f.precedence,
                order,
                CheckedFile {
                    path,
                    data: raw.data,
                    mode,
                    source: f.source.clone(),
                },
            ));
        }
    }
    // Lowest precedence first, so later inserts override.
    candidates.sort_by_key(|c| (c.0, c.1));
    let mut merged: BTreeMap<RelPath, CheckedFile> = BTreeMap::new();
    let mut overrides = Vec::new();
    for (_, _, file) in candidates {
        if let Some(old) = merged.insert(file.path.clone(), file) {
            let new = &merged[&old.path];
            overrides.push(Override {
                path: old.path.to_string(),
                winner: new.source.clone(),
                loser: old.source.clone(),
            });
        }
    }
    if merged.len() > limits.max_files as usize {
        return Err(CheckError::TooMany {
            count: merged.len(),
            limit: limits.max_files,
        });
    }
    let total: u64 = merged.values().map(|f| f.data.len() as u64).sum();
    if total > limits.max_total_bytes {
        return Err(CheckError::TotalTooBig {
            total,
            limit: limits.max_total_bytes,
        });
    }
    for (path, file) in &merged {
        let (parents, _) = path.split_last();
        let mut prefix = String::new();
        for p in parents {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(p);
            if let Some(other) = RelPath::new(&prefix).ok().and_then(|r| merged.get(&r)) {
                return Err(CheckError::FileDirConflict {
                    file: other.path.to_string(),
                    file_source: other.source.clone(),
                    dir: file.path.to_string(),
                });
            }
        }
    }
    Ok(Checked {
        files: merged.into_values().collect(),
        overrides,
        dropped,
        expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(path: &str, data: &[u8], mode: Option<u32>) -> RawFile {
        RawFile {
            path: path.into(),
            data: Secret::new(data.to_vec()),
            mode,
        }
    }

    fn fetched(source: &str, p: Precedence, files: Vec<RawFile>) -> Fetched {
        Fetched {
            source: source.into(),
            precedence: p,
            files,
            expires: None,
        }
    }

    #[test]
    fn an_expiry_in_the_past_is_now_and_one_beyond_a_year_is_ignored() {
        let now = 1_800_000_000;
        assert_eq!(clamp_expiry(now, now + 60), Some(now + 60));
        assert_eq!(clamp_expiry(now, now), Some(now));
        assert_eq!(clamp_expiry(now, now - 1), Some(now));
        assert_eq!(clamp_expiry(now, 0), Some(now));
        assert_eq!(
            clamp_expiry(now, now + MAX_EXPIRY_SECS),
            Some(now + MAX_EXPIRY_SECS)
        );
        assert_eq!(clamp_expiry(now, now + MAX_EXPIRY_SECS + 1), None);
        // Milliseconds by mistake, and the largest value a plugin can send.
        assert_eq!(clamp_expiry(now, now * 1000), None);
        assert_eq!(clamp_expiry(now, u64::MAX), None);
    }

    #[test]
    fn the_requests_expiry_is_the_earliest_of_its_sources() {
        assert_eq!(earliest(None, None), None);
        assert_eq!(earliest(Some(5), None), Some(5));
        assert_eq!(earliest(None, Some(7)), Some(7));
        assert_eq!(earliest(Some(9), Some(7)), Some(7));
        let with = |name: &str, expires, path: &str| Fetched {
            expires,
            ..fetched(name, Precedence::Operator, vec![raw(path, b"x", None)])
        };
        let all = vec![
            with("a", Some(300), "a"),
            with("b", None, "b"),
            with("c", Some(200), "c"),
        ];
        assert_eq!(check(all, &Limits::default()).unwrap().expires, Some(200));
        let none = vec![with("a", None, "a"), with("b", None, "b")];
        assert_eq!(check(none, &Limits::default()).unwrap().expires, None);
        // A source whose files the container did not ask for still counts:
        // a refresh runs it again.
        let narrowed = vec![with("a", Some(300), "a"), with("c", Some(200), "c")];
        let c = check_named(narrowed, &Limits::default(), &["a".into()]).unwrap();
        assert_eq!((c.files.len(), c.expires), (1, Some(200)));
    }

    #[test]
    fn modes_lose_exec_and_special_bits_and_default_to_0400() {
        assert_eq!(clean_mode(None), 0o400);
        assert_eq!(clean_mode(Some(0o4755)), 0o644);
        assert_eq!(clean_mode(Some(0o7777)), 0o666);
        assert_eq!(clean_mode(Some(0o600)), 0o600);
    }

    #[test]
    fn bad_paths_name_the_source() {
        for bad in ["../x", "/etc/passwd", "a\0b", "a//b"] {
            let e = check(
                vec![fetched(
                    "s1",
                    Precedence::Operator,
                    vec![raw(bad, b"x", None)],
                )],
                &Limits::default(),
            )
            .unwrap_err();
            assert!(
                matches!(&e, CheckError::Path { name, .. } if name == "s1"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn file_over_limit_is_refused() {
        let l = Limits {
            max_file_bytes: 4,
            ..Limits::default()
        };
        let e = check(
            vec![fetched(
                "s",
                Precedence::HostDir,
                vec![raw("a", b"12345", None)],
            )],
            &l,
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                CheckError::FileTooBig {
                    size: 5,
                    limit: 4,
                    ..
                }
            ),
            "{e}"
        );
        assert!(!e.to_string().contains("12345"));
    }

    #[test]
    fn totals_and_counts_are_capped() {
        let l = Limits {
            max_total_bytes: 5,
            max_file_bytes: 5,
            max_files: 2,
            ..Limits::default()
        };
        let e = check(
            vec![
                fetched("a", Precedence::HostDir, vec![raw("x", b"123", None)]),
                fetched("b", Precedence::HostDir, vec![raw("y", b"123", None)]),
            ],
            &l,
        )
        .unwrap_err();
        assert!(matches!(e, CheckError::TotalTooBig { total: 6, .. }), "{e}");
        let e = check(
            vec![fetched(
                "a",
                Precedence::HostDir,
                vec![
                    raw("x", b"", None),
                    raw("y", b"", None),
                    raw("z", b"", None),
                ],
            )],
            &l,
        )
        .unwrap_err();
        assert!(
            matches!(e, CheckError::SourceTooMany { count: 3, .. }),
            "{e}"
        );
    }

    #[test]
    fn same_path_twice_from_one_source_is_refused() {
        let e = check(
            vec![fetched(
                "s",
                Precedence::HostDir,
                vec![raw("a", b"1", None), raw("a", b"2", None)],
            )],
            &Limits::default(),
        )
        .unwrap_err();
        assert_eq!(
            e,
            CheckError::Duplicate {
                name: "s".into(),
                path: "a".into()
            }
        );
    }

    #[test]
    fn higher_precedence_wins_and_the_override_is_named() {
        let c = check(
            vec![
                fetched("up", Precedence::Upload, vec![raw("k", b"upload", None)]),
                fetched(
                    "hd",
                    Precedence::HostDir,
                    vec![raw("k", b"host", None), raw("other", b"o", Some(0o644))],
                ),
            ],
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(c.files.len(), 2);
        assert_eq!(c.files[0].data.expose(), b"upload");
        assert_eq!(c.files[0].source, "up");
        assert_eq!(c.files[1].mode, 0o644);
        assert_eq!(
            c.overrides,
            vec![Override {
                path: "k".into(),
                winner: "up".into(),
                loser: "hd".into()
            }]
        );
    }

    #[test]
    fn a_file_where_a_directory_is_needed_is_refused() {
        let e = check(
            vec![
                fetched("a", Precedence::HostDir, vec![raw("x", b"1", None)]),
                fetched("b", Precedence::Operator, vec![raw("x/y", b"2", None)]),
            ],
            &Limits::default(),
        )
        .unwrap_err();
        assert!(matches!(e, CheckError::FileDirConflict { .. }), "{e}");
    }

    #[test]
    fn b12_paths_deeper_than_the_limit_are_refused_before_anything_is_created() {
        let deep = format!("{}f", "a/".repeat(2000));
        let e = check(
            vec![fetched(
                "deep",
                Precedence::Operator,
                vec![raw(&deep, b"x", None)],
            )],
            &Limits::default(),
        )
        .unwrap_err();
        assert!(matches!(e, CheckError::TooDeep { depth: 2001, .. }), "{e}");
        let line = e.to_string();
        assert!(
            line.contains("2001 components deep, over the limit of 32"),
            "{line}"
        );
        assert!(line.len() < 200, "the path is cut short: {line}");
        let ok = format!("{}f", "a/".repeat(MAX_DEPTH - 1));
        check(
            vec![fetched(
                "deep",
                Precedence::Operator,
                vec![raw(&ok, b"x", None)],
            )],
            &Limits::default(),
        )
        .unwrap();
    }

    #[test]
    fn b18_the_host_keeps_only_the_names_the_container_asked_for_and_reports_the_rest() {
        let names = vec!["entitlement/cert.pem".to_string()];
        let c = check_named(
            vec![
                // A plugin that ignored `names`.
                fetched(
                    "greedy",
                    Precedence::Operator,
                    vec![
                        raw("entitlement/cert.pem", b"c", None),
                        raw("other.key", b"o", None),
                    ],
                ),
                // Uploads, which no plugin filters.
                fetched(
                    "upload",
                    Precedence::Upload,
                    vec![raw("api.key", b"u", None)],
                ),
            ],
            &Limits::default(),
            &names,
        )
        .unwrap();
        let kept: Vec<&str> = c.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(kept, vec!["entitlement/cert.pem"]);
        assert_eq!(
            c.dropped,
            vec![
                Dropped {
                    path: "other.key".into(),
                    source: "greedy".into()
                },
                Dropped {
                    path: "api.key".into(),
                    source: "upload".into()
                },
            ]
        );
        // No names: everything.
        let c = check_named(
            vec![fetched(
                "s",
                Precedence::Operator,
                vec![raw("a", b"1", None), raw("b", b"2", None)],
            )],
            &Limits::default(),
            &[],
        )
        .unwrap();
        assert_eq!(c.files.len(), 2);
        assert!(c.dropped.is_empty());
        // A bad path is an error even when it would have been dropped.
        assert!(check_named(
            vec![fetched(
                "s",
                Precedence::Operator,
                vec![raw("../x", b"1", None)]
            )],
            &Limits::default(),
            &names,
        )
        .is_err());
    }
}
