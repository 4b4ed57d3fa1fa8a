//! The daemon's tickets: uploads held in memory only (L1), each owned by the
//! uid that sent it and readable by that uid and root (L8).
//!
//! Tickets are looked up by the SHA-256 of their text, so the map never
//! holds the capability itself and lookups do not compare secrets byte by
//! byte. A ticket ends in one of four ways, and the daemon remembers which
//! for an hour (by hash only), so a late claim is told why:
//! - expired: nobody claimed it within the TTL, or it outlived the maximum age;
//! - removed: every container that claimed it is gone (run tickets);
//! - deleted: its owner (or `privy run`, when the command is over) dropped it;
//! - a daemon restart, which loses everything: the claim then says "unknown".

use crate::secret::{RelPath, Secret};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Prefix of every ticket, so a stray one is recognisable in a script.
pub const TICKET_PREFIX: &str = "pvt_";
/// Random bytes in a ticket (192 bits).
const TICKET_BYTES: usize = 24;
/// How long the reason a ticket ended is remembered.
const TOMBSTONE_LIFETIME: Duration = Duration::from_secs(3600);

/// What a ticket is for: a run's container, or every RUN step of one build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Dropped when the last container that claimed it is removed.
    Run,
    /// Many short RUN containers claim it in turn; it lives until deleted or
    /// until it has gone unclaimed for the TTL.
    Build,
}

/// One uploaded file.
#[derive(Debug)]
pub struct Upload {
    pub path: RelPath,
    pub data: Secret,
    pub mode: u32,
}

/// Why a ticket cannot be used. The text is what the container's user reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("unknown ticket (never issued, or issued by a privy daemon that has since restarted)")]
    Unknown,
    #[error("ticket expired")]
    Expired,
    #[error("ticket was dropped because its container was removed")]
    Removed,
    #[error("ticket was deleted by its owner")]
    Deleted,
    #[error("ticket belongs to another user")]
    Foreign,
    #[error("malformed ticket (expected {TICKET_PREFIX} and 48 hex digits)")]
    Malformed,
    #[error("{0}")]
    Limit(String),
}

impl TicketError {
    /// The HTTP status the API answers with.
    pub fn status(&self) -> u16 {
        match self {
            TicketError::Unknown => 404,
            TicketError::Expired | TicketError::Removed | TicketError::Deleted => 410,
            TicketError::Foreign => 403,
            TicketError::Malformed => 400,
            TicketError::Limit(_) => 413,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Ended {
    Expired,
    Removed,
    Deleted,
}

impl From<Ended> for TicketError {
    fn from(e: Ended) -> Self {
        match e {
            Ended::Expired => TicketError::Expired,
            Ended::Removed => TicketError::Removed,
            Ended::Deleted => TicketError::Deleted,
        }
    }
}

#[derive(Debug)]
struct Ticket {
    owner: u32,
    scope: Scope,
    files: Vec<Upload>,
    bytes: u64,
    created: Instant,
    /// When an unclaimed ticket expires; pushed back by every claim.
    idle_deadline: Instant,
    ttl: Duration,
    /// Containers that claimed it: id → bundle directory.
    claimants: BTreeMap<String, PathBuf>,
}

/// What the owner may learn about a ticket: names and sizes, never bytes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TicketInfo {
    pub owner: u32,
    pub scope: Scope,
    pub files: Vec<FileInfo>,
    pub bytes: u64,
    /// Seconds until an unclaimed ticket expires (claimed run tickets live
    /// on while their container exists).
    pub expires_in_secs: u64,
    pub containers: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FileInfo {
    pub path: String,
    pub size: u64,
    pub mode: u32,
}

/// Limits the store enforces.
#[derive(Debug, Clone)]
pub struct StoreLimits {
    pub max_file_bytes: u64,
    pub max_total_bytes: u64,
    pub max_files: u32,
    pub max_bytes_per_uid: u64,
    pub default_ttl: Duration,
    pub max_age: Duration,
}

/// All tickets of one daemon.
#[derive(Debug)]
pub struct Store {
    limits: StoreLimits,
    tickets: HashMap<[u8; 32], Ticket>,
    tombstones: HashMap<[u8; 32], (Ended, Instant)>,
}

fn key(ticket: &str) -> Result<[u8; 32], TicketError> {
    let hexpart = ticket
        .strip_prefix(TICKET_PREFIX)
        .ok_or(TicketError::Malformed)?;
    if hexpart.len() != TICKET_BYTES * 2 || !hexpart.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TicketError::Malformed);
    }
    Ok(Sha256::digest(ticket.to_ascii_lowercase().as_bytes()).into())
}

/// A fresh ticket's text.
fn new_ticket() -> String {
    let mut raw = [0u8; TICKET_BYTES];
    getrandom::getrandom(&mut raw).expect("the kernel's random source works");
    format!("{TICKET_PREFIX}{}", hex::encode(raw))
}

impl Store {
    pub fn new(limits: StoreLimits) -> Self {
        Store {
            limits,
            tickets: HashMap::new(),
            tombstones: HashMap::new(),
        }
    }

    pub fn limits(&self) -> &StoreLimits {
        &self.limits
    }

    /// Bytes `uid` holds now.
    fn held_by(&self, uid: u32) -> u64 {
        self.tickets
            .values()
            .filter(|t| t.owner == uid)
            .map(|t| t.bytes)
            .sum()
    }

    /// Keep `files` for `owner` and return the ticket that names them.
    pub fn create(
        &mut self,
        owner: u32,
        files: Vec<Upload>,
        scope: Scope,
        ttl: Option<Duration>,
        now: Instant,
    ) -> Result<(String, TicketInfo), TicketError> {
        let l = &self.limits;
        if files.is_empty() {
            return Err(TicketError::Limit(
                "an upload needs at least one file".into(),
            ));
        }
        if files.len() > l.max_files as usize {
            return Err(TicketError::Limit(format!(
                "{} files is more than limits.max_files ({})",
                files.len(),
                l.max_files
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut bytes = 0u64;
        for f in &files {
            if !seen.insert(f.path.as_str()) {
                return Err(TicketError::Limit(format!("{} is given twice", f.path)));
            }
            if f.data.len() as u64 > l.max_file_bytes {
                return Err(TicketError::Limit(format!(
                    "{} is larger than limits.max_file_bytes ({})",
                    f.path, l.max_file_bytes
                )));
            }
            bytes += f.data.len() as u64;
        }
        if bytes > l.max_total_bytes {
            return Err(TicketError::Limit(format!(
                "the upload's {bytes} bytes exceed limits.max_total_bytes ({})",
                l.max_total_bytes
            )));
        }
        if self.held_by(owner) + bytes > l.max_bytes_per_uid {
            return Err(TicketError::Limit(format!(
                "uid {owner} would hold more than daemon.max_bytes_per_uid ({}) in the daemon",
                l.max_bytes_per_uid
            )));
        }
        let ttl = ttl.unwrap_or(l.default_ttl).min(l.max_age);
        let text = new_ticket();
        let t = Ticket {
            owner,
            scope,
            files,
            bytes,
            created: now,
            idle_deadline: now + ttl,
            ttl,
            claimants: BTreeMap::new(),
        };
        let info = info(&t, now);
        self.tickets.insert(key(&text).expect("well-formed"), t);
        Ok((text, info))
    }

    fn live(&self, ticket: &str) -> Result<([u8; 32], &Ticket), TicketError> {
        let k = key(ticket)?;
        match self.tickets.get(&k) {
            Some(t) => Ok((k, t)),
            None => Err(self
                .tombstones
                .get(&k)
                .map(|(why, _)| (*why).into())
                .unwrap_or(TicketError::Unknown)),
        }
    }

    /// Names and sizes, for the owner or root.
    pub fn info(&self, peer: u32, ticket: &str, now: Instant) -> Result<TicketInfo, TicketError> {
        let (_, t) = self.live(ticket)?;
        if peer != 0 && peer != t.owner {
            return Err(TicketError::Foreign);
        }
        Ok(info(t, now))
    }

    /// Hand the files to the hook for `container`, whose bundle is `bundle`.
    /// Root may claim any ticket; any other uid only its own.
    pub fn claim(
        &mut self,
        peer: u32,
        ticket: &str,
        container: &str,
        bundle: PathBuf,
        now: Instant,
    ) -> Result<Vec<(String, &Secret, u32)>, TicketError> {
        let (k, t) = self.live(ticket)?;
        if peer != 0 && peer != t.owner {
            return Err(TicketError::Foreign);
        }
        let t = self.tickets.get_mut(&k).expect("live");
        t.claimants.insert(container.to_owned(), bundle);
        t.idle_deadline = now + t.ttl;
        Ok(t.files
            .iter()
            .map(|f| (f.path.as_str().to_owned(), &f.data, f.mode))
            .collect())
    }

    /// Drop a ticket at its owner's (or root's) request.
    pub fn delete(&mut self, peer: u32, ticket: &str, now: Instant) -> Result<(), TicketError> {
        let (k, t) = self.live(ticket)?;
        if peer != 0 && peer != t.owner {
            return Err(TicketError::Foreign);
        }
        self.end(k, Ended::Deleted, now);
        Ok(())
    }

    fn end(&mut self, k: [u8; 32], why: Ended, now: Instant) {
        // Dropping the ticket drops its uploads, whose `Secret`s zeroize.
        if self.tickets.remove(&k).is_some() {
            self.tombstones.insert(k, (why, now));
        }
    }

    /// End what has expired, and run tickets whose containers are all gone.
    /// `exists` says whether a claimant's bundle is still there. Returns how
    /// many tickets ended.
    pub fn sweep(&mut self, now: Instant, exists: impl Fn(&std::path::Path) -> bool) -> usize {
        let mut ended = Vec::new();
        for (k, t) in &mut self.tickets {
            if now.duration_since(t.created) >= self.limits.max_age {
                ended.push((*k, Ended::Expired));
                continue;
            }
            let had_claims = !t.claimants.is_empty();
            t.claimants.retain(|_, bundle| exists(bundle));
            if !t.claimants.is_empty() {
                continue;
            }
            if had_claims && t.scope == Scope::Run {
                ended.push((*k, Ended::Removed));
            } else if now >= t.idle_deadline {
                ended.push((*k, Ended::Expired));
            }
        }
        let n = ended.len();
        for (k, why) in ended {
            self.end(k, why, now);
        }
        self.tombstones
            .retain(|_, (_, at)| now.duration_since(*at) < TOMBSTONE_LIFETIME);
        n
    }

    /// Live tickets (for the status endpoint and tests).
    pub fn len(&self) -> usize {
        self.tickets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tickets.is_empty()
    }
}

fn info(t: &Ticket, now: Instant) -> TicketInfo {
    TicketInfo {
        owner: t.owner,
        scope: t.scope,
        files: t
            .files
            .iter()
            .map(|f| FileInfo {
                path: f.path.as_str().to_owned(),
                size: f.data.len() as u64,
                mode: f.mode,
            })
            .collect(),
        bytes: t.bytes,
        expires_in_secs: t.idle_deadline.saturating_duration_since(now).as_secs(),
        containers: t.claimants.keys().cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> StoreLimits {
        StoreLimits {
            max_file_bytes: 100,
            max_total_bytes: 150,
            max_files: 3,
            max_bytes_per_uid: 200,
            default_ttl: Duration::from_secs(10),
            max_age: Duration::from_secs(100),
        }
    }

    fn up(path: &str, n: usize) -> Upload {
        Upload {
            path: RelPath::new(path).unwrap(),
            data: Secret::new(vec![7; n]),
            mode: 0o600,
        }
    }

    #[test]
    fn tickets_are_random_well_formed_and_owned() {
        let now = Instant::now();
        let mut s = Store::new(limits());
        let (a, _) = s
            .create(1000, vec![up("k", 5)], Scope::Run, None, now)
            .unwrap();
        let (b, _) = s
            .create(1000, vec![up("k", 5)], Scope::Run, None, now)
            .unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(TICKET_PREFIX) && a.len() == TICKET_PREFIX.len() + 48);
        assert_eq!(s.info(1001, &a, now).unwrap_err(), TicketError::Foreign);
        assert_eq!(
            s.claim(1001, &a, "c", "/b".into(), now).unwrap_err(),
            TicketError::Foreign
        );
        assert_eq!(s.delete(1001, &a, now).unwrap_err(), TicketError::Foreign);
        assert_eq!(s.claim(0, &a, "c", "/b".into(), now).unwrap().len(), 1);
        assert_eq!(s.claim(1000, &b, "c", "/b".into(), now).unwrap().len(), 1);
        let other = format!("{TICKET_PREFIX}{}", "0".repeat(48));
        assert_eq!(s.info(0, &other, now).unwrap_err(), TicketError::Unknown);
        assert_eq!(s.info(0, "nope", now).unwrap_err(), TicketError::Malformed);
    }

    #[test]
    fn limits_per_file_ticket_count_and_uid() {
        let now = Instant::now();
        let mut s = Store::new(limits());
        let e = |r: Result<_, TicketError>| r.unwrap_err().to_string();
        assert!(
            e(s.create(1, vec![up("k", 101)], Scope::Run, None, now)).contains("max_file_bytes")
        );
        assert!(
            e(s.create(1, vec![up("a", 80), up("b", 80)], Scope::Run, None, now))
                .contains("max_total_bytes")
        );
        assert!(e(s.create(
            1,
            (0..4).map(|i| up(&format!("f{i}"), 1)).collect(),
            Scope::Run,
            None,
            now
        ))
        .contains("max_files"));
        assert!(
            e(s.create(1, vec![up("a", 1), up("a", 1)], Scope::Run, None, now)).contains("twice")
        );
        s.create(1, vec![up("a", 100)], Scope::Run, None, now)
            .unwrap();
        s.create(1, vec![up("a", 100)], Scope::Run, None, now)
            .unwrap();
        assert!(
            e(s.create(1, vec![up("a", 1)], Scope::Run, None, now)).contains("max_bytes_per_uid")
        );
        s.create(2, vec![up("a", 100)], Scope::Run, None, now)
            .unwrap();
    }

    #[test]
    fn unclaimed_tickets_expire_and_say_so() {
        let t0 = Instant::now();
        let mut s = Store::new(limits());
        let (a, _) = s
            .create(
                1,
                vec![up("k", 1)],
                Scope::Run,
                Some(Duration::from_secs(1)),
                t0,
            )
            .unwrap();
        assert_eq!(s.sweep(t0, |_| true), 0);
        assert_eq!(s.sweep(t0 + Duration::from_secs(2), |_| true), 1);
        assert_eq!(
            s.claim(0, &a, "c", "/b".into(), t0).unwrap_err(),
            TicketError::Expired
        );
    }

    #[test]
    fn run_tickets_live_while_their_container_exists() {
        let t0 = Instant::now();
        let mut s = Store::new(limits());
        let (a, _) = s.create(1, vec![up("k", 1)], Scope::Run, None, t0).unwrap();
        s.claim(0, &a, "c1", "/bundle/c1".into(), t0).unwrap();
        // Long past the TTL, the container still exists (stopped, or restarting).
        let later = t0 + Duration::from_secs(50);
        assert_eq!(s.sweep(later, |_| true), 0);
        assert!(s.claim(0, &a, "c1", "/bundle/c1".into(), later).is_ok());
        // Removed: gone at the next sweep, and a late claim says why.
        assert_eq!(s.sweep(later, |_| false), 1);
        assert_eq!(
            s.claim(0, &a, "c1", "/b".into(), later).unwrap_err(),
            TicketError::Removed
        );
        // Nothing outlives the maximum age.
        let (b, _) = s.create(1, vec![up("k", 1)], Scope::Run, None, t0).unwrap();
        s.claim(0, &b, "c2", "/bundle/c2".into(), t0).unwrap();
        assert_eq!(s.sweep(t0 + Duration::from_secs(100), |_| true), 1);
        assert_eq!(s.info(1, &b, t0).unwrap_err(), TicketError::Expired);
    }

    #[test]
    fn build_tickets_outlive_each_step_but_not_the_ttl() {
        let t0 = Instant::now();
        let mut s = Store::new(limits());
        let (a, _) = s
            .create(1, vec![up("k", 1)], Scope::Build, None, t0)
            .unwrap();
        s.claim(0, &a, "step1", "/b/1".into(), t0).unwrap();
        assert_eq!(s.sweep(t0 + Duration::from_secs(1), |_| false), 0);
        s.claim(0, &a, "step2", "/b/2".into(), t0 + Duration::from_secs(5))
            .unwrap();
        assert_eq!(s.sweep(t0 + Duration::from_secs(14), |_| false), 0);
        assert_eq!(s.sweep(t0 + Duration::from_secs(16), |_| false), 1);
    }

    #[test]
    fn delete_zeroizes_and_is_remembered() {
        let t0 = Instant::now();
        let mut s = Store::new(limits());
        let (a, _) = s.create(1, vec![up("k", 1)], Scope::Run, None, t0).unwrap();
        s.delete(1, &a, t0).unwrap();
        assert!(s.is_empty());
        assert_eq!(s.info(1, &a, t0).unwrap_err(), TicketError::Deleted);
    }
}
