//! The node agent's refresh scheduler (issue 15): running containers get
//! their sources' current files on a schedule, without a restart.
//!
//! **Who.** Every container the hook served on this host (its record in
//! the hook state, [`hook::served`]), still running, without an upload
//! ticket, whose planned sources include one with `refresh = "..."`; its
//! interval is the smallest of theirs. A record the sources gave an expiry
//! (`Served::expires`) is refreshed before it too. The state directory is
//! read every second; a record is read again only when its file changed,
//! and planned again when the config was reloaded.
//!
//! **When.** Containers with the same interval are spread evenly over it,
//! never all at once (a backend sees one request every interval/N, not N
//! at the top of each interval): they are ordered by a keyed hash of their
//! id (random per agent, so no one can pick a crowded slot), and the i-th
//! of N has the phase i * interval / N ([`phases`]). A container is due at
//! the first time with its phase at least half an interval after its last
//! slot ([`next_slot`]): exactly one interval apart while the set of
//! containers stays the same, and between half and one and a half when a
//! container comes or goes and the phases shift (by at most interval/N).
//! An expiry brings it forward: due by `expires - margin`, the margin 10%
//! of the time left when the expiry was first seen, at most 60 s
//! ([`expiry_due`]); an expiry a refresh did not move is not acted on
//! again (no loop while a source keeps reporting the same one).
//!
//! **How.** Refreshes run on [`WORKERS`] threads of their own, never on the
//! runtime's workers, so a slow source delays other refreshes, never a
//! hook. Each is [`rotate::refresh_with`] with the agent's warm plugins
//! ([`Agent::gather_blocking`]) and [`Wait::Skip`]: one refresh at a time
//! per container (a `flock`, also against `privy refresh`), and one
//! waiting for another is skipped until its next slot. A container is
//! queued at most once.
//!
//! **Failures.** A source that fails leaves the files as they were (the
//! child is never run), logs one line naming the container, the source
//! and the cause, emits a `refresh-failed` audit event, and is tried again
//! at the next slot, not sooner (a container with an expiry and no
//! interval: [`EXPIRY_RETRY`] later). A container that stopped (pid gone or
//! reused) is never entered and is forgotten without a line, until its
//! record changes.
//!
//! **SIGHUP** ([`Rotation::refresh_all`]): after the reload, every served
//! container is refreshed now, whether its sources set `refresh` or not,
//! as `privy refresh --all` would.

use super::agent::{stamp, Agent, Stamp};
use crate::config::Config;
use crate::hook::{self, Served};
use crate::pipeline::rotate::{self, RotateError, Wait};
use crate::sys::unix_now;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Refreshes that run at once.
pub const WORKERS: usize = 4;
/// How often the state directory is read for containers that came or went.
const SCAN_EVERY: Duration = Duration::from_secs(1);
/// The most an expiry brings a refresh forward (see [`expiry_due`]).
pub const EXPIRY_MARGIN_MAX_SECS: u64 = 60;
/// When a refresh for an expiry failed and no interval will try again:
/// how long until the next attempt.
pub const EXPIRY_RETRY: Duration = Duration::from_secs(10);

// ---- the schedule, pure ------------------------------------------------

/// The phases (ms within the interval) of the members of one interval's
/// group, given their keyed hashes, in the order given: ordered by hash
/// (then by position, for equal hashes), the i-th of n has i * interval / n.
pub fn phases(hashes: &[u64], interval_ms: u64) -> Vec<u64> {
    let n = hashes.len() as u64;
    let mut order: Vec<usize> = (0..hashes.len()).collect();
    order.sort_by_key(|&i| (hashes[i], i));
    let mut out = vec![0; hashes.len()];
    for (rank, i) in order.into_iter().enumerate() {
        out[i] = (rank as u64 * interval_ms) / n.max(1);
    }
    out
}

/// The first time (ms) at or after `earliest` whose offset in the interval
/// is `phase_ms`.
pub fn slot_at_or_after(earliest: u64, phase_ms: u64, interval_ms: u64) -> u64 {
    let base = earliest - earliest % interval_ms;
    let t = base + phase_ms;
    if t >= earliest {
        t
    } else {
        t + interval_ms
    }
}

/// When a container whose last slot (or first sighting) was `last_ms` is
/// next due: its phase, at least half an interval later.
pub fn next_slot(last_ms: u64, phase_ms: u64, interval_ms: u64) -> u64 {
    slot_at_or_after(last_ms + interval_ms / 2, phase_ms, interval_ms)
}

/// When (unix seconds) to refresh files that expire at `expires`, the
/// expiry first seen at `seen_at`: `expires` less 10% of the time that was
/// left, at most [`EXPIRY_MARGIN_MAX_SECS`].
pub fn expiry_due(expires: u64, seen_at: u64) -> u64 {
    let left = expires.saturating_sub(seen_at);
    expires.saturating_sub((left / 10).min(EXPIRY_MARGIN_MAX_SECS))
}

// ---- the scheduler -----------------------------------------------------

/// What the scheduler knows of one container with a record.
#[derive(Debug)]
struct Entry {
    stamp: Option<Stamp>,
    kind: Kind,
    /// Queued or running.
    busy: bool,
}

#[derive(Debug)]
enum Kind {
    /// Running, refreshable; on a schedule when it has an interval or an
    /// expiry.
    Live(Sched),
    /// Carries an upload ticket: never refreshed (see `rotate`).
    Ticketed,
    /// Stopped (or its pid reused): never entered, forgotten until its
    /// record changes.
    Gone,
}

#[derive(Debug, Default)]
struct Sched {
    interval_ms: Option<u64>,
    hash: u64,
    phase_ms: u64,
    /// The slot of its last refresh, or when it was first seen (ms since
    /// the scheduler started).
    last_ms: u64,
    expires: Option<u64>,
    /// When (unix seconds) this expiry was first seen.
    expiry_seen: u64,
    /// An expiry already refreshed for.
    expiry_done: Option<u64>,
    /// Another attempt (ms), after a refresh for an expiry failed and no
    /// interval slot will come ([`EXPIRY_RETRY`] later).
    retry_ms: Option<u64>,
}

/// Why a container is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Slot,
    Expiry,
    Retry,
}

impl Sched {
    /// When it is due (ms), and why: the earliest of its interval slot,
    /// its expiry's due time and a retry.
    fn due(&self, now_ms: u64, now_unix: u64) -> Option<(u64, Why)> {
        let slot = self
            .interval_ms
            .map(|i| (next_slot(self.last_ms, self.phase_ms, i), Why::Slot));
        let expiry = self
            .expires
            .filter(|e| self.expiry_done != Some(*e))
            .map(|e| {
                let at = expiry_due(e, self.expiry_seen);
                (now_ms + at.saturating_sub(now_unix) * 1000, Why::Expiry)
            });
        let retry = self.retry_ms.map(|t| (t, Why::Retry));
        [slot, expiry, retry]
            .into_iter()
            .flatten()
            .min_by_key(|d| d.0)
    }
}

enum Event {
    /// SIGHUP: refresh every served container now.
    All,
    /// The [`Rotation`] was dropped.
    Stop,
    Done {
        id: String,
        result: Result<rotate::Changes, RotateError>,
    },
}

/// The running scheduler; stops when dropped.
pub struct Rotation {
    events: mpsc::Sender<Event>,
}

impl Rotation {
    /// Start the scheduler and its workers for `agent`; refreshes run
    /// `exe refresh-apply` (the agent's own binary).
    pub fn start(agent: Arc<Agent>, exe: PathBuf) -> Rotation {
        let (events, inbox) = mpsc::channel();
        let (jobs, queue) = mpsc::channel::<String>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..WORKERS {
            let (agent, exe, queue, done) =
                (agent.clone(), exe.clone(), queue.clone(), events.clone());
            std::thread::Builder::new()
                .name(format!("privy-refresh-{n}"))
                .spawn(move || worker(&agent, &exe, &queue, &done))
                .expect("a refresh worker thread");
        }
        std::thread::Builder::new()
            .name("privy-rotation".into())
            .spawn(move || Scheduler::new(agent).run(&inbox, &jobs))
            .expect("the refresh scheduler thread");
        Rotation { events }
    }

    /// Refresh every served container now (SIGHUP).
    pub fn refresh_all(&self) {
        let _ = self.events.send(Event::All);
    }
}

impl Drop for Rotation {
    /// The scheduler stops; the workers finish the refresh they run.
    fn drop(&mut self) {
        let _ = self.events.send(Event::Stop);
    }
}

fn worker(
    agent: &Agent,
    exe: &Path,
    queue: &Mutex<mpsc::Receiver<String>>,
    done: &mpsc::Sender<Event>,
) {
    loop {
        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(id) = next else { return };
        // When the sources are asked (what a backend sees; scripts/bench-refresh).
        tracing::trace!(container = %id, "agent: refresh started");
        let warm = agent.current();
        let result =
            rotate::refresh_with(&warm.cfg, &id, exe, Wait::Skip, &mut |_, planned, req| {
                agent.gather_blocking(&warm, planned, req)
            });
        match &result {
            Ok(c) if !c.is_empty() => tracing::info!(
                container = %id,
                changed = c.changed.len(),
                added = c.added.len(),
                removed = c.removed.len(),
                unchanged = c.unchanged,
                "agent: refreshed"
            ),
            Ok(_) => tracing::debug!(container = %id, "agent: refreshed, nothing changed"),
            Err(e) if e.is_stopped() => {
                tracing::debug!(container = %id, "agent: container stopped; forgotten")
            }
            Err(RotateError::Busy { .. }) => {
                tracing::debug!(container = %id, "agent: another refresh of it is running")
            }
            Err(e) => tracing::warn!(
                container = %id,
                source = e.failed_source().unwrap_or("-"),
                "agent: refresh failed, tried again at its next slot: {e}"
            ),
        }
        if done.send(Event::Done { id, result }).is_err() {
            return;
        }
    }
}

struct Scheduler {
    agent: Arc<Agent>,
    keyed: std::collections::hash_map::RandomState,
    origin: Instant,
    entries: BTreeMap<String, Entry>,
    /// The config and plugins the entries were planned with.
    planned_with: std::sync::Weak<super::agent::Warm>,
}

impl Scheduler {
    fn new(agent: Arc<Agent>) -> Scheduler {
        Scheduler {
            agent,
            keyed: Default::default(),
            origin: Instant::now(),
            entries: BTreeMap::new(),
            planned_with: std::sync::Weak::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    fn run(mut self, inbox: &mpsc::Receiver<Event>, jobs: &mpsc::Sender<String>) {
        let mut next_scan = Instant::now();
        loop {
            if Instant::now() >= next_scan {
                self.scan();
                next_scan = Instant::now() + SCAN_EVERY;
            }
            let (now_ms, now_unix) = (self.now_ms(), unix_now());
            let mut wake = next_scan;
            for (id, e) in &mut self.entries {
                let Kind::Live(s) = &mut e.kind else { continue };
                if e.busy {
                    continue;
                }
                let Some((due, why)) = s.due(now_ms, now_unix) else {
                    continue;
                };
                if due > now_ms {
                    wake = wake.min(self.origin + Duration::from_millis(due));
                    continue;
                }
                match (why, s.interval_ms) {
                    (Why::Expiry, _) => s.expiry_done = s.expires,
                    (Why::Retry, _) => s.retry_ms = None,
                    // Late by more than half an interval (a stall): the
                    // next slot is still ahead, not at once again.
                    (Why::Slot, Some(i)) => s.last_ms = due.max(now_ms.saturating_sub(i / 2)),
                    (Why::Slot, None) => {}
                }
                e.busy = true;
                if jobs.send(id.clone()).is_err() {
                    return;
                }
            }
            let timeout = wake.saturating_duration_since(Instant::now());
            match inbox.recv_timeout(timeout) {
                Ok(Event::All) => {
                    self.scan();
                    next_scan = Instant::now() + SCAN_EVERY;
                    self.all(jobs);
                }
                Ok(Event::Done { id, result }) => self.done(&id, result),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Ok(Event::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Queue every served, live, unticketed container that is not queued.
    fn all(&mut self, jobs: &mpsc::Sender<String>) {
        let now_ms = self.now_ms();
        let mut n = 0;
        for (id, e) in &mut self.entries {
            let Kind::Live(s) = &mut e.kind else { continue };
            if e.busy {
                continue;
            }
            if let Some(i) = s.interval_ms {
                s.last_ms = now_ms.saturating_sub(i / 2).max(s.last_ms);
            }
            e.busy = true;
            n += 1;
            let _ = jobs.send(id.clone());
        }
        tracing::info!(containers = n, "SIGHUP: refreshing every served container");
    }

    fn done(&mut self, id: &str, result: Result<rotate::Changes, RotateError>) {
        let now_ms = self.now_ms();
        let Some(e) = self.entries.get_mut(id) else {
            return;
        };
        e.busy = false;
        match &result {
            Err(err) if err.is_stopped() => e.kind = Kind::Gone,
            Err(RotateError::Ticketed { .. }) => e.kind = Kind::Ticketed,
            Err(RotateError::Busy { .. }) => {}
            Err(_) => {
                // A failed refresh for an expiry is tried again at the next
                // slot; without one, after a pause (never in a tight loop).
                if let Kind::Live(s) = &mut e.kind {
                    if s.interval_ms.is_none() && s.expires.is_some() {
                        s.retry_ms = Some(now_ms + EXPIRY_RETRY.as_millis() as u64);
                    }
                }
            }
            Ok(_) => {
                if let Kind::Live(s) = &mut e.kind {
                    s.retry_ms = None;
                }
            }
        }
    }

    /// Read the state directory: records that came, changed or went, and
    /// every phase again.
    fn scan(&mut self) {
        let warm = self.agent.current();
        // A reload swaps the agent's Warm: plan everything again. (A weak
        // reference keeps the old allocation, so its address is never
        // reused for a newer one.)
        let reloaded = !std::sync::Weak::ptr_eq(&self.planned_with, &Arc::downgrade(&warm));
        self.planned_with = Arc::downgrade(&warm);
        let cfg = &warm.cfg;
        let ids = hook::served_ids(cfg);
        let now_ms = self.now_ms();
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        for id in ids {
            let st = hook::state_path(cfg, &id).and_then(|p| stamp(&p));
            seen.insert(id.clone());
            if let Some(e) = self.entries.get(&id) {
                if e.stamp == st && !reloaded {
                    continue;
                }
            }
            let old = self.entries.remove(&id);
            let busy = old.as_ref().is_some_and(|e| e.busy);
            let kind = self.evaluate(cfg, &id, old.map(|e| e.kind), now_ms);
            self.entries.insert(
                id,
                Entry {
                    stamp: st,
                    kind,
                    busy,
                },
            );
        }
        self.entries.retain(|id, _| seen.contains(id));
        self.place();
    }

    /// What a (new or changed) record means now.
    fn evaluate(&self, cfg: &Config, id: &str, old: Option<Kind>, now_ms: u64) -> Kind {
        let served: Served = match hook::served(cfg, id) {
            Ok(Some(s)) => s,
            Ok(None) => return Kind::Gone,
            Err(e) => {
                tracing::warn!(container = %id, "agent: cannot read its record, not refreshed: {e}");
                return Kind::Gone;
            }
        };
        if served.had_ticket {
            return Kind::Ticketed;
        }
        match crate::sys::process::start_time(served.at.pid) {
            Ok(s) if s == served.at.start_time => {}
            _ => return Kind::Gone,
        }
        let mut s = match old {
            Some(Kind::Live(s)) => s,
            _ => Sched {
                hash: self.keyed.hash_one(id),
                last_ms: now_ms,
                ..Sched::default()
            },
        };
        s.interval_ms = match crate::pipeline::request::Request::load(served.oci_state()) {
            Ok(req) => crate::pipeline::plan::plan(cfg, &req)
                .iter()
                .filter_map(|p| p.refresh)
                .min()
                .map(|d| d.as_millis().max(1) as u64),
            Err(e) => {
                // Its bundle could not be read: said once (until the
                // record or the config changes); a refresh would fail too.
                tracing::warn!(container = %id, "agent: cannot plan it, not refreshed on a schedule: {e}");
                None
            }
        };
        if s.expires != served.expires {
            s.expires = served.expires;
            s.expiry_seen = unix_now();
        }
        Kind::Live(s)
    }

    /// Every live container's phase in its interval's group.
    fn place(&mut self) {
        let mut groups: HashMap<u64, Vec<&mut Sched>> = HashMap::new();
        for e in self.entries.values_mut() {
            if let Kind::Live(s) = &mut e.kind {
                if let Some(i) = s.interval_ms {
                    groups.entry(i).or_default().push(s);
                }
            }
        }
        for (interval, members) in groups {
            let hashes: Vec<u64> = members.iter().map(|s| s.hash).collect();
            for (s, p) in members.into_iter().zip(phases(&hashes, interval)) {
                s.phase_ms = p;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Refresh times of `n` containers with `interval`, first seen at
    /// `first[i]`, over `rounds` intervals, with the phases as the
    /// scheduler gives them.
    fn simulate(hashes: &[u64], first: &[u64], interval: u64, until: u64) -> Vec<Vec<u64>> {
        let ph = phases(hashes, interval);
        (0..hashes.len())
            .map(|i| {
                let mut times = Vec::new();
                let mut last = first[i];
                loop {
                    let t = next_slot(last, ph[i], interval);
                    if t > until {
                        break times;
                    }
                    times.push(t);
                    last = t;
                }
            })
            .collect()
    }

    fn pseudo(seed: u64, n: usize) -> Vec<u64> {
        // splitmix64: arbitrary, repeatable hashes.
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = x;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^ (z >> 31)
            })
            .collect()
    }

    #[test]
    fn a_hundred_containers_on_2s_are_spread_evenly_and_each_refreshed_once_per_interval() {
        let (n, interval) = (100usize, 2_000u64);
        let std_hash = std::collections::hash_map::RandomState::new();
        for hashes in [
            pseudo(1, n),
            pseudo(7, n),
            // The agent's own keyed hash of container-like ids.
            (0..n)
                .map(|i| std_hash.hash_one(format!("c-{i:04}")))
                .collect(),
        ] {
            // All seen within the first interval, in a burst (as at agent start).
            let first: Vec<u64> = hashes.iter().map(|h| h % 300).collect();
            let until = 20 * interval;
            let times = simulate(&hashes, &first, interval, until);
            // Once per interval: every gap is exactly one interval.
            for t in &times {
                assert!(t.len() >= 18, "{t:?}");
                for w in t.windows(2) {
                    assert_eq!(w[1] - w[0], interval);
                }
            }
            // Spread: in steady state, no 100 ms window (sliding, 1 ms
            // steps) holds more than its share (n * 100 / interval = 5) + 1.
            let mut all: Vec<u64> = times
                .into_iter()
                .flatten()
                .filter(|t| *t >= 2 * interval)
                .collect();
            all.sort_unstable();
            let share = (n as u64 * 100 / interval) as usize;
            let mut max = 0;
            for start in 2 * interval..until - 100 {
                let lo = all.partition_point(|t| *t < start);
                let hi = all.partition_point(|t| *t < start + 100);
                max = max.max(hi - lo);
            }
            assert!(
                max <= share + 1,
                "a 100 ms window holds {max} refreshes (share {share})"
            );
        }
    }

    #[test]
    fn a_container_that_comes_or_goes_shifts_the_others_by_at_most_one_share() {
        let interval = 2_000;
        let hashes = pseudo(3, 10);
        let before = phases(&hashes, interval);
        let mut more = hashes.clone();
        more.push(pseudo(99, 1)[0]);
        let after = phases(&more, interval);
        for (a, b) in before.iter().zip(&after) {
            assert!(a.abs_diff(*b) <= interval / 10, "{a} -> {b}");
        }
        // A phase that moved keeps the gap between half and one and a half
        // intervals.
        for (a, b) in before.iter().zip(&after) {
            let t1 = slot_at_or_after(10_000, *a, interval);
            let t2 = next_slot(t1, *b, interval);
            assert!(
                (interval / 2..=interval * 3 / 2).contains(&(t2 - t1)),
                "{t1} -> {t2}"
            );
        }
        // Phases are distinct, in [0, interval), and the first is 0.
        let mut sorted = after.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), after.len());
        assert!(sorted[0] == 0 && *sorted.last().unwrap() < interval);
    }

    #[test]
    fn slots_fall_on_the_phase_at_or_after_the_earliest_time() {
        assert_eq!(slot_at_or_after(0, 0, 1000), 0);
        assert_eq!(slot_at_or_after(1, 0, 1000), 1000);
        assert_eq!(slot_at_or_after(1500, 700, 1000), 1700);
        assert_eq!(slot_at_or_after(1800, 700, 1000), 2700);
        assert_eq!(slot_at_or_after(1700, 700, 1000), 1700);
        // First seen at 1234: due at its phase half an interval on.
        assert_eq!(next_slot(1234, 500, 1000), 2500);
        assert_eq!(next_slot(1234, 800, 1000), 1800);
    }

    #[test]
    fn an_expiry_brings_the_refresh_forward_by_a_tenth_of_the_time_left_at_most_a_minute() {
        // 100 s left: 10 s before.
        assert_eq!(expiry_due(1_100, 1_000), 1_090);
        // An hour left: a minute before.
        assert_eq!(expiry_due(10_000 + 3_600, 10_000), 13_540);
        // Already past, or no time left: now.
        assert_eq!(expiry_due(1_000, 2_000), 1_000);
        assert_eq!(expiry_due(5, 5), 5);
        // 9 s left: the margin rounds down to 0 s... never past the expiry.
        assert!(expiry_due(1_009, 1_000) <= 1_009);

        let at = |s: &Sched, now_ms, now_unix| s.due(now_ms, now_unix);
        use Why::{Expiry, Retry, Slot};
        let mut s = Sched {
            interval_ms: Some(60_000),
            phase_ms: 30_000,
            last_ms: 0,
            expires: Some(1_100),
            expiry_seen: 1_000,
            ..Sched::default()
        };
        // Interval slot at 30 s; the expiry (due at unix 1090, 90 s from
        // now at unix 1000) is later: the slot wins.
        assert_eq!(at(&s, 0, 1_000), Some((30_000, Slot)));
        // Expiry sooner than the slot: it wins.
        s.expires = Some(1_020);
        assert_eq!(at(&s, 0, 1_000), Some((18_000, Expiry)));
        // Acted on, and not moved by the refresh: the slot again.
        s.expiry_done = Some(1_020);
        assert_eq!(at(&s, 0, 1_000), Some((30_000, Slot)));
        // No interval: the expiry alone, or nothing.
        let mut e = Sched {
            expires: Some(1_100),
            expiry_seen: 1_000,
            ..Sched::default()
        };
        assert_eq!(at(&e, 5_000, 1_000), Some((95_000, Expiry)));
        // Its refresh for the expiry failed: a retry, and only that.
        e.expiry_done = e.expires;
        e.retry_ms = Some(15_000);
        assert_eq!(at(&e, 5_000, 1_000), Some((15_000, Retry)));
        e.retry_ms = None;
        assert_eq!(at(&e, 5_000, 1_000), None);
        e.expires = None;
        assert_eq!(at(&e, 5_000, 1_000), None);
    }
}
