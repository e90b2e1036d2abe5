//! Process figures from `/proc`: CPU time and resident memory of the server
//! under test, of the ceiling relay and of the tool itself; the open-file limit.

use std::fs;

/// CPU seconds (user + system) and memory of one process at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sample {
    pub cpu_s: f64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

/// `"self"` or a PID, as in `/proc/{who}`.
#[derive(Debug, Clone)]
pub(crate) struct Proc {
    who: String,
}

impl Proc {
    pub(crate) fn this() -> Proc {
        Proc { who: "self".into() }
    }

    pub(crate) fn pid(pid: u32) -> Proc {
        Proc {
            who: pid.to_string(),
        }
    }

    pub(crate) fn sample(&self) -> Option<Sample> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.who)).ok()?;
        let status = fs::read_to_string(format!("/proc/{}/status", self.who)).ok()?;
        let ticks = rustix::param::clock_ticks_per_second().max(1) as f64;
        Some(Sample {
            cpu_s: cpu_ticks(&stat)? as f64 / ticks,
            rss_kib: status_kib(&status, "VmRSS:")?,
            hwm_kib: status_kib(&status, "VmHWM:")?,
        })
    }

    /// Resets the peak RSS (`VmHWM`) to the current RSS; false when not allowed.
    pub(crate) fn reset_peak(&self) -> bool {
        fs::write(format!("/proc/{}/clear_refs", self.who), "5").is_ok()
    }
}

/// utime + stime, in clock ticks, from a `/proc/PID/stat` line.
pub(crate) fn cpu_ticks(stat: &str) -> Option<u64> {
    // The command name may hold spaces and parentheses: fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` line of `/proc/PID/status`.
pub(crate) fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// What a process used between two samples.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Usage {
    pub cpu_s: f64,
    pub peak_rss_kib: u64,
}

pub(crate) fn usage(before: Option<Sample>, after: Option<Sample>) -> Option<Usage> {
    let (b, a) = (before?, after?);
    Some(Usage {
        cpu_s: (a.cpu_s - b.cpu_s).max(0.0),
        peak_rss_kib: a.hwm_kib,
    })
}

/// Raises the soft open-file limit to the hard one; returns the new soft limit.
pub(crate) fn raise_nofile_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        lim.current = lim.maximum;
        setrlimit(Resource::Nofile, lim).ok()?;
    }
    getrlimit(Resource::Nofile).current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_survive_odd_command_names() {
        let stat = "1234 (a b) c)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1";
        assert_eq!(cpu_ticks(stat), Some(300));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn status_lines_are_read_in_kib() {
        let s = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(status_kib(s, "VmRSS:"), Some(1024));
        assert_eq!(status_kib(s, "VmHWM:"), Some(2048));
        assert_eq!(status_kib(s, "VmSwap:"), None);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = Proc::this().sample().unwrap();
        assert!(s.rss_kib > 0);
    }
}
