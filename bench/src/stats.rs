//! Latency histograms and the summary of repeated runs (median, min, max).

/// Values below this are counted exactly; above, 64 buckets per power of two
/// (at most 1.6 % error).
const LINEAR: u64 = 128;
const SUB: u64 = 64;

/// A log-linear histogram of microsecond values; grows only as far as the
/// largest value seen.
#[derive(Debug, Default, Clone)]
pub(crate) struct Histogram {
    counts: Vec<u32>,
    total: u64,
    max: u64,
}

fn index(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros() as u64;
    let shift = msb - 6;
    (LINEAR + (shift - 1) * SUB + ((v >> shift) - SUB)) as usize
}

/// The largest value that falls in bucket `i`.
fn upper(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let shift = (i - LINEAR) / SUB + 1;
    let base = (i - LINEAR) % SUB + SUB;
    ((base + 1) << shift) - 1
}

impl Histogram {
    pub(crate) fn record(&mut self, v: u64) {
        let i = index(v);
        if i >= self.counts.len() {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] = self.counts[i].saturating_add(1);
        self.total += 1;
        self.max = self.max.max(v);
    }

    pub(crate) fn merge(&mut self, other: &Histogram) {
        if other.counts.len() > self.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a = a.saturating_add(*b);
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    pub(crate) fn count(&self) -> u64 {
        self.total
    }

    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0..=1), rounded up to its bucket's bound.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += u64::from(*c);
            if seen >= rank {
                return upper(i).min(self.max);
            }
        }
        self.max
    }
}

/// Median, min and max of one metric over the runs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// `None` for an empty list; the median of an even count is the mean of
    /// the two middle values.
    pub(crate) fn of(values: &[f64]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_tight() {
        let mut last = 0;
        for v in 0..200_000u64 {
            let i = index(v);
            assert!(i == last || i == last + 1, "v={v}");
            assert!(upper(i) >= v);
            assert!(upper(i) as f64 <= v as f64 * 1.016 + 1.0, "v={v}");
            last = i;
        }
    }

    #[test]
    fn quantiles_of_a_uniform_spread() {
        let mut h = Histogram::default();
        for v in 1..=1000 {
            h.record(v);
        }
        assert_eq!(h.count(), 1000);
        assert!((495..=510).contains(&h.quantile(0.5)));
        assert!((985..=1000).contains(&h.quantile(0.99)));
        assert_eq!(h.max(), 1000);
        let mut g = Histogram::default();
        g.record(5000);
        h.merge(&g);
        assert_eq!(h.max(), 5000);
        assert_eq!(h.count(), 1001);
    }

    #[test]
    fn spread_of_odd_and_even_counts() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of(&[1.0, 2.0]).unwrap().median, 1.5);
        assert!(Spread::of(&[]).is_none());
    }
}
