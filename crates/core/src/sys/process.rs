//! Process-level habits: what a privy process that holds private bytes does
//! to itself (L1), signal dispositions, and leaving like a signal did.

/// Refuse to be dumped while holding private bytes (L1): not dumpable (no
/// core, no `ptrace` by the same uid, `/proc/PID/mem` root-only) and no
/// core file even if something resets that. The hook, the daemon and
/// `privy build` call it first thing.
pub fn harden() {
    not_dumpable();
    // SAFETY: setrlimit with a constant, valid rlimit.
    unsafe {
        let zero = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &zero);
    }
}

/// Only `PR_SET_DUMPABLE=0`: for `privy run` and `privy upload`, which hold
/// the user's files for the moment of the upload and then run the user's
/// command. They leave `RLIMIT_CORE` alone because the command they start
/// inherits it, and the user's own core dumps are not privy's to disable.
pub fn not_dumpable() {
    // SAFETY: prctl with constant arguments.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

/// Keep this process's memory out of swap (L1); best effort, says so when
/// it fails. For the daemon, which holds uploads for minutes.
pub fn lock_memory() {
    // MCL_ONFAULT: a page is locked when it is first touched, not when it
    // is mapped. A page that holds a secret has been touched, so nothing
    // private can reach swap either way; but the agent's plugin pool
    // reserves stacks and tables for every slot, and locking them eagerly
    // made ~180 MB resident for nothing.
    // SAFETY: mlockall with constant flags.
    let r = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) };
    if r != 0 {
        tracing::warn!(
            "mlockall failed ({}); uploads may be swapped out",
            std::io::Error::last_os_error()
        );
    }
}

/// SIGINT and SIGQUIT ignored in this process until dropped: a Ctrl-C that
/// reaches a child (same process group) lets privy clean up after it
/// instead of dying first.
pub struct IgnoreTerminalSignals;

impl IgnoreTerminalSignals {
    pub fn new() -> Self {
        // SAFETY: setting a signal disposition to SIG_IGN has no preconditions.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            libc::signal(libc::SIGQUIT, libc::SIG_IGN);
        }
        IgnoreTerminalSignals
    }
}

impl Default for IgnoreTerminalSignals {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for IgnoreTerminalSignals {
    fn drop(&mut self) {
        // SAFETY: restoring the default disposition has no preconditions.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGQUIT, libc::SIG_DFL);
        }
    }
}

/// Die of `sig` as the child did (default action restored, then raised),
/// so a shell sees the same status. Returns only if the signal does not
/// end the process (one whose default is to ignore, such as SIGCHLD);
/// the caller then exits 128+`sig`.
pub fn die_like(sig: i32) {
    // SAFETY: restoring the default action and raising a signal on ourselves.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// Peak resident set size of this program, in KiB: `VmHWM`, the high-water
/// mark of this process's own memory. Not `getrusage`'s `ru_maxrss`: Linux
/// carries that across `exec` from the parent's copy of its memory at
/// `fork`, so a small program started by a large one (a test binary holding
/// hundreds of MiB) would report the parent's size as its own.
pub fn peak_rss_kib() -> u64 {
    if let Some(kib) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| vm_hwm_kib(&s))
    {
        return kib;
    }
    // SAFETY: getrusage fills the struct it is given.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru.ru_maxrss as u64
    }
}

/// `VmHWM:   1234 kB` from `/proc/PID/status`.
fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod peak_tests {
    #[test]
    fn vm_hwm_is_read_from_status() {
        let status = "Name:\tprivy\nVmPeak:\t  9000 kB\nVmHWM:\t    1234 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(super::vm_hwm_kib(status), Some(1234));
        assert_eq!(super::vm_hwm_kib("Name:\tx\n"), None);
        assert!(super::peak_rss_kib() > 0);
    }
}

/// When process `pid` started, in clock ticks since boot (field 22 of
/// `/proc/PID/stat`): with the pid, it names one process for good, since a
/// pid the kernel reuses gets a later start time.
pub fn start_time(pid: i32) -> std::io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_start_time(&stat).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("/proc/{pid}/stat: no start time"),
        )
    })
}

/// Field 22 of a `/proc/PID/stat` line. The command name (field 2) is in
/// parentheses and may hold spaces and `)`: count from the last `)`.
fn parse_start_time(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    // rest starts at field 3; field 22 is the 20th after it.
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn start_time_counts_fields_after_the_last_paren() {
        let line = "42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(super::parse_start_time(line), Some(987654));
        let me = super::start_time(std::process::id() as i32).unwrap();
        assert!(me > 0);
        assert_eq!(me, super::start_time(std::process::id() as i32).unwrap());
    }
}
