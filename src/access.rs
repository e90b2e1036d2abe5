//! Who may connect: address sets (whitelists) and the per-IP concurrent limit.
//!
//! Peer addresses are canonicalised first, so an IPv4-mapped IPv6 peer
//! (`::ffff:1.2.3.4`) is `1.2.3.4` everywhere.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use ipnet::IpNet;

/// A set of addresses given as IPs and CIDR ranges, or everyone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrSet {
    all: bool,
    nets: Vec<IpNet>,
}

impl AddrSet {
    /// The set an unset variable means: everyone or nobody.
    pub fn from_empty(empty_means_all: bool) -> Self {
        Self {
            all: empty_means_all,
            nets: Vec::new(),
        }
    }

    /// Parses `a, b/24, *`; blanks trimmed, empty items ignored. Returns the first bad item.
    pub fn parse(list: &str, empty_means_all: bool) -> Result<Self, String> {
        let mut set = Self::from_empty(false);
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if item == "*" {
                set.all = true;
            } else if let Ok(net) = item.parse::<IpNet>() {
                set.nets.push(canonical_net(net));
            } else if let Ok(ip) = item.parse::<IpAddr>() {
                set.nets.push(IpNet::from(ip.to_canonical()));
            } else {
                return Err(item.to_owned());
            }
        }
        if !set.all && set.nets.is_empty() {
            set.all = empty_means_all;
        }
        Ok(set)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.all || self.nets.iter().any(|n| n.contains(&ip))
    }
}

/// `everyone`, `nobody`, or the comma list of ranges (as `--check-config` shows it).
impl std::fmt::Display for AddrSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.all {
            return f.write_str("everyone");
        }
        if self.nets.is_empty() {
            return f.write_str("nobody");
        }
        let items: Vec<String> = self.nets.iter().map(ToString::to_string).collect();
        f.write_str(&items.join(", "))
    }
}

/// `::ffff:a.b.c.d/96+n` written as IPv6 is matched as the IPv4 range it covers.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).unwrap_or(net),
            None => net,
        },
        other => other,
    }
}

/// Counts concurrent streaming connections per client IP.
#[derive(Debug, Clone)]
pub(crate) struct IpLimiter {
    inner: Arc<LimiterInner>,
}

#[derive(Debug)]
struct LimiterInner {
    max: u32,
    exempt: AddrSet,
    counts: Mutex<HashMap<IpAddr, u32>>,
}

/// One taken slot; released exactly once, when dropped.
#[derive(Debug)]
pub(crate) struct IpSlot {
    limiter: Option<(Arc<LimiterInner>, IpAddr)>,
}

impl IpLimiter {
    pub(crate) fn new(max: u32, exempt: AddrSet) -> Self {
        Self {
            inner: Arc::new(LimiterInner {
                max,
                exempt,
                counts: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Takes a slot for `ip`, or `None` when its limit is reached.
    pub(crate) fn acquire(&self, ip: IpAddr) -> Option<IpSlot> {
        let ip = ip.to_canonical();
        if self.inner.exempt.contains(ip) {
            return Some(IpSlot { limiter: None });
        }
        let mut counts = self.inner.lock();
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.inner.max {
            if *count == 0 {
                counts.remove(&ip);
            }
            return None;
        }
        *count += 1;
        Some(IpSlot {
            limiter: Some((self.inner.clone(), ip)),
        })
    }

    /// Slots currently held by `ip` (for tests and metrics).
    pub(crate) fn held(&self, ip: IpAddr) -> u32 {
        let ip = ip.to_canonical();
        self.inner.lock().get(&ip).copied().unwrap_or(0)
    }
}

impl LimiterInner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, u32>> {
        // The map stays consistent even if a holder panicked: every update is one statement.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let Some((inner, ip)) = self.limiter.take() else {
            return;
        };
        let mut counts = inner.lock();
        if let Some(count) = counts.get_mut(&ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_ips_ranges_and_star() {
        type Case<'a> = (&'a str, bool, &'a [(&'a str, bool)]);
        let cases: &[Case] = &[
            ("", true, &[("1.2.3.4", true)]),
            ("", false, &[("1.2.3.4", false)]),
            (" , ", false, &[("1.2.3.4", false)]),
            ("*", false, &[("::1", true), ("8.8.8.8", true)]),
            (
                "127.0.0.1, 10.0.0.0/8",
                false,
                &[("127.0.0.1", true), ("10.9.9.9", true), ("11.0.0.1", false)],
            ),
            ("::1", true, &[("::1", true), ("127.0.0.1", false)]),
            ("fd00::/8", false, &[("fd12::1", true), ("fe80::1", false)]),
            ("1.2.3.4", false, &[("::ffff:1.2.3.4", true)]),
            ("::ffff:10.0.0.0/104", false, &[("10.1.2.3", true)]),
        ];
        for (list, empty_all, probes) in cases {
            let set = AddrSet::parse(list, *empty_all).unwrap();
            for (addr, want) in *probes {
                assert_eq!(set.contains(ip(addr)), *want, "{list:?} contains {addr}");
            }
        }
    }

    #[test]
    fn rejects_bad_items() {
        for (list, bad) in [
            ("1.2.3.4, nope", "nope"),
            ("10.0.0.0/33", "10.0.0.0/33"),
            ("1.2.3", "1.2.3"),
            ("**", "**"),
        ] {
            assert_eq!(AddrSet::parse(list, true), Err(bad.to_owned()));
        }
    }

    #[test]
    fn limiter_counts_and_releases_once() {
        let limiter = IpLimiter::new(2, AddrSet::from_empty(false));
        let a = limiter.acquire(ip("127.0.0.1")).unwrap();
        let b = limiter.acquire(ip("::ffff:127.0.0.1")).unwrap();
        assert!(limiter.acquire(ip("127.0.0.1")).is_none());
        assert!(limiter.acquire(ip("127.0.0.2")).is_some());
        drop(a);
        assert_eq!(limiter.held(ip("127.0.0.1")), 1);
        let _c = limiter.acquire(ip("127.0.0.1")).unwrap();
        drop(b);
        assert_eq!(limiter.held(ip("127.0.0.1")), 1);
    }

    #[test]
    fn exempt_and_zero_limit() {
        let limiter = IpLimiter::new(0, AddrSet::parse("10.0.0.0/8", false).unwrap());
        assert!(limiter.acquire(ip("127.0.0.1")).is_none());
        assert!(limiter.acquire(ip("10.1.1.1")).is_some());
        assert_eq!(limiter.held(ip("127.0.0.1")), 0);
    }
}
