//! `when.users`: who may receive a source's files when privy's hook runs
//! without real root (rootless podman, buildah). One entry is a uid, a user
//! name or `group:NAME`; names are kept as written and looked up when a
//! container starts (the caller's name and groups come from the host's user
//! database then), so a config can name users that do not exist yet. The
//! matching itself is [`crate::pipeline::plan::users_allow`].

use super::file::UserFile;
use serde::{Deserialize, Serialize};

/// One typed `when.users` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "UserFile", into = "UserFile")]
pub enum UserMatch {
    /// A host uid (`1001`, `"1001"`).
    Uid(u32),
    /// A user name (`"alice"`, `"root"`).
    User(String),
    /// Every member of a group, primary or supplementary (`"group:dev"`).
    Group(String),
}

/// The prefix that makes an entry a group.
pub const GROUP_PREFIX: &str = "group:";

/// Whether `s` can be a user or group name: what `useradd` accepts by
/// default (a letter or `_` first, then letters, digits, `_`, `-`, `.`, an
/// optional final `$`), at most 32 bytes.
fn valid_name(s: &str) -> bool {
    let body = s.strip_suffix('$').unwrap_or(s);
    let mut chars = body.chars();
    s.len() <= 32
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

impl TryFrom<UserFile> for UserMatch {
    type Error = String;
    fn try_from(u: UserFile) -> Result<Self, String> {
        let s = match u {
            UserFile::Id(id) => return Ok(UserMatch::Uid(id)),
            UserFile::Name(s) => s,
        };
        if let Some(g) = s.strip_prefix(GROUP_PREFIX) {
            return if valid_name(g) {
                Ok(UserMatch::Group(g.to_owned()))
            } else {
                Err(format!(
                    "{} is not a group name (letters, digits, `_`, `-`, `.`; a letter or `_` first)",
                    crate::shown::shown(g)
                ))
            };
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse()
                .map(UserMatch::Uid)
                .map_err(|_| format!("{s} is not a uid (0 to 4294967295)"));
        }
        if valid_name(&s) {
            Ok(UserMatch::User(s))
        } else {
            Err(format!(
                "{} is neither a uid, a user name nor group:NAME",
                crate::shown::shown(&s)
            ))
        }
    }
}

impl From<UserMatch> for UserFile {
    fn from(u: UserMatch) -> UserFile {
        match u {
            UserMatch::Uid(id) => UserFile::Id(id),
            UserMatch::User(n) => UserFile::Name(n),
            UserMatch::Group(g) => UserFile::Name(format!("{GROUP_PREFIX}{g}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(u: UserFile) -> Result<UserMatch, String> {
        UserMatch::try_from(u)
    }

    #[test]
    fn entries_are_uids_names_or_groups_and_nothing_else() {
        let n = |s: &str| UserFile::Name(s.into());
        assert_eq!(parse(UserFile::Id(1001)), Ok(UserMatch::Uid(1001)));
        assert_eq!(parse(n("1001")), Ok(UserMatch::Uid(1001)));
        assert_eq!(parse(n("privy-rl")), Ok(UserMatch::User("privy-rl".into())));
        assert_eq!(parse(n("_svc$")), Ok(UserMatch::User("_svc$".into())));
        assert_eq!(parse(n("group:dev")), Ok(UserMatch::Group("dev".into())));
        for bad in ["", "group:", "group:1x", "a b", "99999999999", "-x", "x/y"] {
            assert!(parse(n(bad)).is_err(), "{bad:?}");
        }
        // Written back as given (a uid string becomes a number).
        assert_eq!(
            UserFile::from(UserMatch::Group("dev".into())),
            n("group:dev")
        );
    }
}
