//! Which connections the daemon takes: a cap per uid, a cap in total, and
//! a share of the total that only root (the hook) may use (B3).
//!
//! Every open connection costs the daemon a file descriptor and a task.
//! Without caps, one local user holding some 20,000 idle connections used
//! up the daemon's descriptors, and the hook (root) could no longer start a
//! container that needed a ticket. Now a non-root uid holds at most
//! `max_connections_per_uid`, all non-root uids together at most
//! `max_connections - root_reserved_connections`, and root may use the rest.
//! A refused connection is answered with one JSON line and closed at once,
//! so the listen queue keeps draining and root's connection is reached
//! promptly. Idle and slow clients are cut off by the timeouts the server
//! applies (see `daemon::serve`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The connection caps, as configured (after clamping to the open-file
/// limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Open connections in total, root's included.
    pub max_connections: u32,
    /// Open connections of one non-root uid.
    pub max_connections_per_uid: u32,
    /// Of `max_connections`, how many only root may use.
    pub root_reserved_connections: u32,
}

#[derive(Debug, Default)]
struct Counts {
    total: u32,
    per_uid: HashMap<u32, u32>,
}

/// The daemon's open connections, counted per uid.
#[derive(Debug)]
pub struct Admission {
    limits: ConnLimits,
    counts: Mutex<Counts>,
}

/// Why a connection was not taken; the text is what the client reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("uid {uid} already has {max} connections open to the privy daemon (daemon.max_connections_per_uid); close some and retry")]
    PerUid { uid: u32, max: u32 },
    #[error("the privy daemon has no connection free for non-root users ({max} open; daemon.max_connections less daemon.root_reserved_connections); retry shortly")]
    Total { max: u32 },
    #[error("the privy daemon has {max} connections open (daemon.max_connections); retry shortly")]
    Full { max: u32 },
}

/// One admitted connection; the count drops when it does.
#[derive(Debug)]
pub struct Slot {
    adm: Arc<Admission>,
    uid: u32,
}

impl Admission {
    pub fn new(limits: ConnLimits) -> Arc<Admission> {
        Arc::new(Admission {
            limits,
            counts: Mutex::new(Counts::default()),
        })
    }

    pub fn limits(&self) -> ConnLimits {
        self.limits
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Counters stay consistent under a panic: each update is one step.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take a connection from `uid`, or say why not.
    pub fn admit(self: &Arc<Self>, uid: u32) -> Result<Slot, Refused> {
        let l = self.limits;
        let mut c = self.counts();
        if uid == 0 {
            if c.total >= l.max_connections {
                return Err(Refused::Full {
                    max: l.max_connections,
                });
            }
        } else {
            let shared = l.max_connections - l.root_reserved_connections;
            let mine = c.per_uid.get(&uid).copied().unwrap_or(0);
            if mine >= l.max_connections_per_uid {
                return Err(Refused::PerUid {
                    uid,
                    max: l.max_connections_per_uid,
                });
            }
            // Root's own connections count too: the reserve is what is
            // left for root when everyone else has taken their share.
            if c.total >= shared {
                return Err(Refused::Total { max: shared });
            }
        }
        c.total += 1;
        *c.per_uid.entry(uid).or_insert(0) += 1;
        Ok(Slot {
            adm: self.clone(),
            uid,
        })
    }

    /// Open connections now.
    pub fn open(&self) -> u32 {
        self.counts().total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.adm.counts();
        c.total -= 1;
        if let Some(n) = c.per_uid.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                c.per_uid.remove(&self.uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b3_per_uid_and_total_caps_keep_a_reserve_for_root() {
        let a = Admission::new(ConnLimits {
            max_connections: 10,
            max_connections_per_uid: 4,
            root_reserved_connections: 3,
        });
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(a.admit(1000).unwrap());
        }
        assert_eq!(
            a.admit(1000).unwrap_err(),
            Refused::PerUid { uid: 1000, max: 4 }
        );
        for _ in 0..3 {
            held.push(a.admit(1001).unwrap());
        }
        // 7 open: the shared part is full, the reserve is root's.
        assert_eq!(a.admit(1002).unwrap_err(), Refused::Total { max: 7 });
        for _ in 0..3 {
            held.push(a.admit(0).unwrap());
        }
        assert_eq!(a.admit(0).unwrap_err(), Refused::Full { max: 10 });
        // Closing gives the slot back, to the same uid or another.
        held.truncate(3);
        assert_eq!(a.open(), 3);
        assert!(a.admit(1000).is_ok());
        assert!(a.admit(1002).is_ok());
    }

    #[test]
    fn b3_connection_figures_are_checked_and_named_in_the_config() {
        use crate::config::Config;
        let check = |daemon: &str| {
            Config::parse(
                &format!("[daemon]\n{daemon}\n"),
                std::path::Path::new("t.toml"),
            )
            .map(|c| c.daemon)
            .map_err(|e| e.to_string())
        };
        let d = check("").unwrap();
        assert_eq!(
            (
                d.max_connections,
                d.max_connections_per_uid,
                d.root_reserved_connections
            ),
            (1024, 64, 128)
        );
        assert_eq!((d.header_timeout_secs, d.request_timeout_secs), (5, 30));
        for (bad, key) in [
            (
                "root_reserved_connections = 1024",
                "daemon.root_reserved_connections",
            ),
            (
                "max_connections_per_uid = 1000",
                "daemon.max_connections_per_uid",
            ),
            ("max_connections = 0", "daemon.max_connections"),
            ("header_timeout_secs = 31", "daemon.header_timeout_secs"),
            ("max_tickets_per_uid = 0", "daemon.max_tickets_per_uid"),
            ("client_timeout_secs = 0", "daemon.client_timeout_secs"),
        ] {
            let e = check(bad).unwrap_err();
            assert!(e.contains(&format!("`{key}`")), "{bad}: {e}");
        }
    }
}
