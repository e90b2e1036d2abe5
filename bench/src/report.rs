//! Turning outcomes into the figures of BENCHMARKS.md: per-run metrics, then
//! one markdown table with medians (min–max) side by side and their ratio.

use crate::stats::Spread;
use crate::traffic::Outcome;

/// Names of the figures of a traffic run, in table order.
pub(crate) const TRAFFIC: [&str; 12] = [
    "delivered MB/s",
    "chunks/s",
    "latency p50 ms",
    "latency p99 ms",
    "latency max ms",
    "errors",
    "server CPU s",
    "server CPU s per Gbit",
    "tool CPU s",
    "server peak RSS MiB",
    "receive targets' CPU s",
    "receive targets' CPU s per Gbit",
];

/// The figures of one run, `None` where not measured.
pub(crate) fn traffic_figures(o: &Outcome) -> Vec<Option<f64>> {
    let secs = o.elapsed.as_secs_f64().max(1e-9);
    let gbit = o.delivered_bytes as f64 * 8.0 / 1e9;
    let ms = |us: u64| us as f64 / 1000.0;
    vec![
        Some(o.delivered_bytes as f64 / secs / 1e6),
        Some(o.published as f64 / secs),
        Some(ms(o.latency.quantile(0.5))),
        Some(ms(o.latency.quantile(0.99))),
        Some(ms(o.latency.max())),
        Some(o.errors() as f64),
        o.server.map(|u| u.cpu_s),
        o.server.map(|u| u.cpu_s / gbit.max(1e-9)),
        o.tool.map(|u| u.cpu_s),
        o.server.map(|u| u.peak_rss_kib as f64 / 1024.0),
        o.edges.map(|u| u.cpu_s),
        o.edges.map(|u| u.cpu_s / gbit.max(1e-9)),
    ]
}

/// Per-metric spreads over runs: `runs[r][m]`.
pub(crate) fn spreads(runs: &[Vec<Option<f64>>], metrics: usize) -> Vec<Option<Spread>> {
    (0..metrics)
        .map(|m| {
            let v: Vec<f64> = runs
                .iter()
                .filter_map(|r| r.get(m).copied().flatten())
                .collect();
            Spread::of(&v)
        })
        .collect()
}

fn cell(s: Option<Spread>) -> String {
    match s {
        None => "–".into(),
        Some(s) if s.min == s.max => fmt(s.median),
        Some(s) => format!("{} ({}–{})", fmt(s.median), fmt(s.min), fmt(s.max)),
    }
}

fn fmt(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 || a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// Prints a markdown table: one column per side, then `left/right`.
pub(crate) fn table(title: &str, names: &[&str], sides: &[(&str, Vec<Option<Spread>>)]) {
    println!("\n### {title}\n");
    let mut header = String::from("| metric |");
    let mut rule = String::from("| --- |");
    for (name, _) in sides {
        header += &format!(" {name} |");
        rule += " --- |";
    }
    if sides.len() == 2 {
        header += &format!(" {}/{} |", sides[0].0, sides[1].0);
        rule += " --- |";
    }
    println!("{header}\n{rule}");
    for (i, name) in names.iter().enumerate() {
        let mut line = format!("| {name} |");
        for (_, s) in sides {
            line += &format!(" {} |", cell(s.get(i).copied().flatten()));
        }
        if sides.len() == 2 {
            let a = sides[0].1.get(i).copied().flatten();
            let b = sides[1].1.get(i).copied().flatten();
            let ratio = match (a, b) {
                (Some(a), Some(b)) if b.median != 0.0 => format!("{:.2}", a.median / b.median),
                _ => "–".into(),
            };
            line += &format!(" {ratio} |");
        }
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_skip_unmeasured_runs() {
        let runs = vec![
            vec![Some(1.0), None],
            vec![Some(3.0), None],
            vec![Some(2.0), None],
        ];
        let s = spreads(&runs, 2);
        assert_eq!(s[0].unwrap().median, 2.0);
        assert!(s[1].is_none());
    }

    #[test]
    fn numbers_keep_three_significant_digits() {
        assert_eq!(fmt(1234.4), "1234");
        assert_eq!(fmt(12.345), "12.3");
        assert_eq!(fmt(1.2345), "1.23");
        assert_eq!(cell(None), "–");
    }
}
