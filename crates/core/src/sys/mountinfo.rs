//! The kernel's mount tables (`/proc/PID/mountinfo`), parsed, and the one
//! question privy asks of them: where else would a mount attached under a
//! given mount appear?
//!
//! A mount attached under a *shared* parent is copied to every peer of that
//! parent, and to the slaves of those peers, and on through any slave that
//! is itself shared (mount_namespaces(7)), whatever the new mount's own
//! propagation. If one of those receivers lives in another mount namespace
//! (the host's, or another container's), privy's tmpfs appears there too: a
//! host user can read the files, and the mount outlives the container (B1).
//! Peer group ids (`shared:N`, `master:N`) are global across namespaces, so
//! the tables of every namespace together tell where a group reaches.
//! Materialize asks this before it attaches anything ([`reaches_outside`]).

use std::collections::BTreeSet;

/// One line of a mountinfo table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Mount id (field 1), what `statx(STATX_MNT_ID)` reports.
    pub id: u64,
    /// The parent mount's id.
    pub parent: u64,
    /// The filesystem's device (`major:minor`): one superblock, one value.
    pub dev: (u32, u32),
    /// Which directory of the filesystem is this mount's root.
    pub root: String,
    /// Where it is mounted, relative to the reading process's root.
    pub mount_point: String,
    /// Filesystem type (`tmpfs`, `overlay`, `ext4`...).
    pub fstype: String,
    /// `shared:N`: the peer group this mount belongs to.
    pub shared: Option<u64>,
    /// `master:N`: the peer group this mount is a slave of.
    pub master: Option<u64>,
}

impl Mount {
    /// `shared:N`, `master:N`, both, or `private`, as mountinfo says it.
    pub fn propagation(&self) -> String {
        let mut p = Vec::new();
        if let Some(n) = self.shared {
            p.push(format!("shared:{n}"));
        }
        if let Some(n) = self.master {
            p.push(format!("master:{n}"));
        }
        if p.is_empty() {
            "private".into()
        } else {
            p.join(" ")
        }
    }
}

/// Undo mountinfo's octal escapes (`\040` for a space, `\012`, `\134`...).
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = (oct[0] - b'0') as u32 * 64
                    + (oct[1] - b'0') as u32 * 8
                    + (oct[2] - b'0') as u32;
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_line(line: &str) -> Option<Mount> {
    let mut f = line.split(' ');
    let id = f.next()?.parse().ok()?;
    let parent = f.next()?.parse().ok()?;
    let (maj, min) = f.next()?.split_once(':')?;
    let dev = (maj.parse().ok()?, min.parse().ok()?);
    let root = unescape(f.next()?);
    let mount_point = unescape(f.next()?);
    let _options = f.next()?;
    let (mut shared, mut master) = (None, None);
    loop {
        let tag = f.next()?;
        if tag == "-" {
            break;
        }
        if let Some(n) = tag.strip_prefix("shared:") {
            shared = Some(n.parse().ok()?);
        } else if let Some(n) = tag.strip_prefix("master:") {
            master = Some(n.parse().ok()?);
        }
        // `propagate_from:N` and `unbindable` change nothing for privy:
        // propagate_from names the master's group as this namespace cannot
        // see it, and master:N is already given.
    }
    let fstype = unescape(f.next()?);
    Some(Mount {
        id,
        parent,
        dev,
        root,
        mount_point,
        fstype,
        shared,
        master,
    })
}

/// Parse a whole mountinfo table. A line privy cannot read is an error: a
/// propagation check that skipped lines could miss a peer.
pub fn parse(text: &str) -> Result<Vec<Mount>, String> {
    text.lines()
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| parse_line(l).ok_or_else(|| format!("mountinfo line {} is malformed", i + 1)))
        .collect()
}

/// One mount namespace's table, and one process in it (to name it).
#[derive(Debug, Clone)]
pub struct Namespace {
    /// The namespace's inode number (`/proc/PID/ns/mnt`).
    pub id: u64,
    /// A process in it.
    pub pid: i32,
    /// Whether it is privy's own namespace (the host's, for a rootful hook).
    pub own: bool,
    pub mounts: Vec<Mount>,
}

impl Namespace {
    /// How an error line names it.
    pub fn describe(&self) -> String {
        if self.own {
            "privy's own mount namespace (the host's)".into()
        } else {
            format!("the mount namespace of pid {}", self.pid)
        }
    }
}

/// The first mount outside the namespace `inside` that a mount attached
/// under a member of peer group `group` would be copied to, if any.
/// Follows the propagation graph the way the kernel does: every peer of the
/// group receives, every slave of the group receives, and a receiving slave
/// that is itself shared passes it on to its own peers and slaves.
pub fn reaches_outside(
    group: u64,
    inside: u64,
    namespaces: &[Namespace],
) -> Option<(&Namespace, &Mount)> {
    let mut groups = BTreeSet::from([group]);
    loop {
        let mut grew = false;
        for ns in namespaces {
            for m in &ns.mounts {
                if let (Some(master), Some(own)) = (m.master, m.shared) {
                    if groups.contains(&master) && groups.insert(own) {
                        grew = true;
                    }
                }
            }
        }
        if !grew {
            break;
        }
    }
    let receives = |m: &Mount| {
        m.shared.is_some_and(|g| groups.contains(&g))
            || m.master.is_some_and(|g| groups.contains(&g))
    };
    namespaces
        .iter()
        .filter(|ns| ns.id != inside)
        .find_map(|ns| ns.mounts.iter().find(|m| receives(m)).map(|m| (ns, m)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
46 27 254:0 /tmp/with\\040space /tmp/with\\040space rw,relatime shared:7 master:3 - ext4 /dev/vda rw
90 72 0:42 / /c/run rw,relatime master:7 propagate_from:7 unbindable - tmpfs tmpfs rw
";

    #[test]
    fn octal_escapes_are_undone_and_incomplete_ones_kept() {
        assert_eq!(super::unescape("/a\\040b"), "/a b");
        assert_eq!(super::unescape("/a\\040"), "/a ");
        assert_eq!(super::unescape("/a\\04"), "/a\\04");
        assert_eq!(super::unescape("/a\\999"), "/a\\999");
    }

    #[test]
    fn lines_parse_with_their_propagation_and_escapes() {
        let t = parse(TABLE).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].shared, Some(1));
        assert_eq!(t[0].master, None);
        assert_eq!(t[1].mount_point, "/tmp/with space");
        assert_eq!((t[1].shared, t[1].master), (Some(7), Some(3)));
        assert_eq!(t[1].propagation(), "shared:7 master:3");
        assert_eq!(t[2].fstype, "tmpfs");
        assert_eq!(t[2].dev, (0, 42));
        assert_eq!(t[2].propagation(), "master:7");
    }

    #[test]
    fn a_malformed_line_is_an_error_not_a_skip() {
        for bad in [
            "27 1 254:0 / / rw shared:1 ext4",
            "x 1 1:1 / / rw - t s o",
            "1 1 11 / / rw - t s o",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    fn m(id: u64, shared: Option<u64>, master: Option<u64>) -> Mount {
        Mount {
            id,
            parent: 1,
            dev: (0, 1),
            root: "/".into(),
            mount_point: format!("/m{id}"),
            fstype: "ext4".into(),
            shared,
            master,
        }
    }

    #[test]
    fn a_group_reaches_its_peers_their_slaves_and_shared_slaves_peers() {
        let container = Namespace {
            id: 10,
            pid: 100,
            own: false,
            mounts: vec![m(1, Some(5), None), m(2, Some(6), Some(5))],
        };
        // Peers only inside the container: nothing escapes.
        assert!(reaches_outside(5, 10, std::slice::from_ref(&container)).is_none());
        // A host mount in group 6, reached through the container's shared slave.
        let host = Namespace {
            id: 20,
            pid: 1,
            own: true,
            mounts: vec![m(30, Some(9), None), m(31, None, Some(6))],
        };
        let all = [container.clone(), host];
        let (ns, mnt) = reaches_outside(5, 10, &all).expect("escapes");
        assert_eq!((ns.id, mnt.id), (20, 31));
        // A group nobody outside belongs to.
        assert!(reaches_outside(9, 20, &all).is_none());
    }
}
