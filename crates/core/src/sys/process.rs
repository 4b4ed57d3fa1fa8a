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

/// Peak resident set size of this process, in KiB.
pub fn peak_rss_kib() -> u64 {
    // SAFETY: getrusage fills the struct it is given.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru.ru_maxrss as u64
    }
}
