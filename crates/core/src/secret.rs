//! Types that make leaks hard: [`Secret`] holds private bytes (redacted in
//! `Debug`, zeroized on drop, never serializable) and [`RelPath`] is a path
//! under the target that has been checked once and can be trusted after.

use crate::shown::shown;
use std::fmt;
use zeroize::Zeroize;

/// Private bytes. `Debug` shows only the length; the buffer is zeroized when
/// dropped; there is deliberately no `Display`, `Serialize` or `Clone`.
pub struct Secret(Vec<u8>);

impl Secret {
    /// Take ownership of `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(bytes)
    }

    /// The bytes, for writing them into the container's tmpfs.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes redacted>)", self.0.len())
    }
}

/// Longest path accepted under the target, in bytes.
pub const MAX_PATH: usize = 4096;
/// Longest single component, in bytes (NAME_MAX).
pub const MAX_COMPONENT: usize = 255;

/// A validated path relative to the target directory: `/`-separated, no
/// leading `/`, no empty, `.` or `..` component, no NUL or control bytes,
/// at most [`MAX_PATH`] bytes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelPath(String);

/// Why a path was refused. The message shows the path escaped and cut short,
/// since it came from a plugin and could be anything.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("empty path")]
    Empty,
    #[error("path {0} is longer than {MAX_PATH} bytes")]
    TooLong(String),
    #[error("path {0} is absolute; paths are relative to the target")]
    Absolute(String),
    #[error("path {0} has an empty, `.` or `..` component")]
    BadComponent(String),
    #[error("path {0} has a component longer than {MAX_COMPONENT} bytes")]
    LongComponent(String),
    #[error("path {0} contains NUL or control characters")]
    Control(String),
}

impl RelPath {
    /// Validate `p`.
    pub fn new(p: &str) -> Result<Self, PathError> {
        if p.is_empty() {
            return Err(PathError::Empty);
        }
        if p.len() > MAX_PATH {
            return Err(PathError::TooLong(shown(p)));
        }
        if p.chars().any(|c| c.is_control()) {
            return Err(PathError::Control(shown(p)));
        }
        if p.starts_with('/') {
            return Err(PathError::Absolute(shown(p)));
        }
        for c in p.split('/') {
            if c.is_empty() || c == "." || c == ".." {
                return Err(PathError::BadComponent(shown(p)));
            }
            if c.len() > MAX_COMPONENT {
                return Err(PathError::LongComponent(shown(p)));
            }
        }
        Ok(RelPath(p.to_owned()))
    }

    /// The path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The components, in order.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The parent directories' components and the file name.
    pub fn split_last(&self) -> (Vec<&str>, &str) {
        let mut parts: Vec<&str> = self.components().collect();
        let name = parts.pop().expect("a RelPath has at least one component");
        (parts, name)
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l7_secret_debug_never_shows_the_value() {
        let s = Secret::new(b"hunter2-top-secret".to_vec());
        let shown = format!("{s:?} {:#?}", s);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("18 bytes"), "{shown}");
    }

    #[test]
    fn relpath_accepts_nested_relative_paths() {
        for ok in [
            "a",
            "entitlement/cert.pem",
            "a.b/c-d_e/f",
            "..a/b..",
            ".hidden",
        ] {
            assert_eq!(RelPath::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn relpath_refuses_escapes_and_junk() {
        assert_eq!(RelPath::new(""), Err(PathError::Empty));
        assert!(matches!(
            RelPath::new("/etc/passwd"),
            Err(PathError::Absolute(_))
        ));
        for bad in ["../x", "a/../b", "a/./b", "a//b", "a/", ".", ".."] {
            assert!(
                matches!(RelPath::new(bad), Err(PathError::BadComponent(_))),
                "{bad}"
            );
        }
        assert!(matches!(RelPath::new("a\0b"), Err(PathError::Control(_))));
        assert!(matches!(RelPath::new("a\nb"), Err(PathError::Control(_))));
        assert!(matches!(
            RelPath::new(&"a/".repeat(2100)),
            Err(PathError::TooLong(_))
        ));
        assert!(matches!(
            RelPath::new(&"a".repeat(256)),
            Err(PathError::LongComponent(_))
        ));
    }

    #[test]
    fn relpath_error_cuts_long_untrusted_paths() {
        let e = RelPath::new(&format!("/{}", "x".repeat(500)))
            .unwrap_err()
            .to_string();
        assert!(e.len() < 200, "{e}");
    }
}
