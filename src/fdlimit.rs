//! The open-files limit. Every connection is a file descriptor, and the usual
//! soft limit of 1,024 stops a server at about a thousand receivers; like the
//! Go original, the binary raises its soft limit to the hard limit at start-up.

/// Below this many open files the server warns at start-up: a few thousand
/// receivers is an ordinary load, and each holds one descriptor (the server
/// itself needs a few dozen, the metrics listener up to 64 more).
pub const LOW_NOFILE: u64 = 4096;

/// The open-files limit before and after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nofile {
    pub before: u64,
    pub now: u64,
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (or to the kernel's
/// `fs.nr_open` when the hard limit is unlimited).
pub fn raise() -> std::io::Result<Nofile> {
    let (before, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    let now = rlimit::increase_nofile_limit(u64::MAX)
        .or_else(|_| rlimit::increase_nofile_limit(nr_open()))?;
    Ok(Nofile { before, now, hard })
}

/// The kernel's ceiling for any process's limit; what Linux allows for an unlimited hard limit.
fn nr_open() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 20)
}

/// [`raise`], then one log line with the limit in force, a warning when it is
/// below [`LOW_NOFILE`].
pub fn raise_and_log() {
    match raise() {
        Ok(n) if n.now < LOW_NOFILE => tracing::warn!(
            "open files limit {} (hard limit {}): fewer than {LOW_NOFILE}, so at most about {} \
             connections; raise the hard limit (systemd LimitNOFILE=, ulimit -Hn)",
            n.now,
            n.hard,
            n.now.saturating_sub(100)
        ),
        Ok(n) => tracing::info!(
            "open files limit {} (was {}, hard limit {})",
            n.now,
            n.before,
            n.hard
        ),
        Err(e) => tracing::warn!(error = %e, "open files limit: cannot be read or raised"),
    }
}
