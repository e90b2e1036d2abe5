//! The traffic scenarios (`fanout`, `channels`, `slow`): repeated runs against
//! each target in turn, summarised as medians.

use std::time::Duration;

use anyhow::Result;

use crate::receiver::StuckEnd;
use crate::report::{self, TRAFFIC};
use crate::target::Target;
use crate::traffic::{self, Outcome, Plan};

/// Chunk size, rate and checking, shared by the traffic scenarios.
#[derive(Debug, Clone)]
pub(crate) struct Load {
    pub chunk: usize,
    pub rate_bps: Option<f64>,
    pub window_bytes: usize,
    pub verify_every: u64,
    pub duration: Duration,
    pub runs: usize,
}

impl Load {
    pub(crate) fn describe(&self) -> String {
        let rate = match self.rate_bps {
            Some(r) => format!("{:.3} Mbit/s per publisher", r / 1e6),
            None => "max rate".into(),
        };
        let window = match self.window_bytes {
            0 => ", no window".to_owned(),
            w if self.rate_bps.is_none() => format!(", window {} MiB", w >> 20),
            _ => String::new(),
        };
        format!(
            "{} B chunks, {rate}{window}, {:.0} s × {} runs",
            self.chunk,
            self.duration.as_secs_f64(),
            self.runs
        )
    }

    pub(crate) fn plan(
        &self,
        channels: usize,
        receivers: usize,
        stuck: usize,
        tag: String,
    ) -> Plan {
        Plan {
            channels,
            receivers,
            stuck,
            chunk: self.chunk,
            rate_bps: self.rate_bps,
            duration: self.duration,
            window: match self.window_bytes {
                0 => u64::MAX,
                bytes => (bytes / self.chunk.max(1)).max(2) as u64,
            },
            verify_every: self.verify_every,
            tag,
        }
    }
}

fn tag(label: &str, run: usize) -> String {
    format!("bench-{}-{label}-r{run}", std::process::id())
}

fn note_errors(name: &str, run: usize, o: &Outcome, errors: &mut u64) {
    *errors += o.errors();
    if o.errors() > 0 || !o.failures.is_empty() {
        eprintln!(
            "{name} run {run}: errors {} (lost {}, duplicated {}, reordered {}, corrupt {}, failed receivers {}) {:?}",
            o.errors(), o.lost, o.duplicated, o.reordered, o.corrupt, o.failed, o.failures
        );
    }
}

/// M channels × K receivers against every target, `runs` times, interleaved.
/// Returns the total error count.
pub(crate) async fn compare(
    targets: &[&Target],
    load: &Load,
    channels: usize,
    receivers: usize,
    title: &str,
) -> Result<u64> {
    let mut per_target: Vec<Vec<Vec<Option<f64>>>> = vec![Vec::new(); targets.len()];
    let mut errors = 0;
    for run in 0..load.runs {
        for (t, target) in targets.iter().enumerate() {
            let plan = load.plan(
                channels,
                receivers,
                0,
                tag(&format!("{}{t}", target.name), run),
            );
            let o = traffic::run(target, &plan).await?;
            note_errors(target.name, run, &o, &mut errors);
            eprintln!(
                "{title} [{}] run {run}: {:.0} MB/s, p99 {:.1} ms, errors {}",
                target.name,
                o.delivered_bytes as f64 / o.elapsed.as_secs_f64().max(1e-9) / 1e6,
                o.latency.quantile(0.99) as f64 / 1000.0,
                o.errors()
            );
            per_target[t].push(report::traffic_figures(&o));
        }
    }
    let sides: Vec<_> = targets
        .iter()
        .zip(&per_target)
        .map(|(t, runs)| (t.name, report::spreads(runs, TRAFFIC.len())))
        .collect();
    report::table(&format!("{title}; {}", load.describe()), &TRAFFIC, &sides);
    println!("\nerrors over all runs: {errors}");
    Ok(errors)
}

/// K healthy receivers without, then with, S stuck ones, against one target.
pub(crate) async fn slow(
    target: &Target,
    load: &Load,
    healthy: usize,
    stuck: usize,
) -> Result<u64> {
    let (mut without, mut with) = (Vec::new(), Vec::new());
    let mut errors = 0;
    let mut ends: Vec<StuckEnd> = Vec::new();
    for run in 0..load.runs {
        for (count, into) in [(0, &mut without), (stuck, &mut with)] {
            let plan = load.plan(1, healthy, count, tag(&format!("slow{count}"), run));
            let o = traffic::run(target, &plan).await?;
            note_errors(target.name, run, &o, &mut errors);
            eprintln!(
                "slow [{} stuck] run {run}: p99 {:.1} ms, errors {}, stuck ends {:?}",
                count,
                o.latency.quantile(0.99) as f64 / 1000.0,
                o.errors(),
                o.stuck
            );
            ends.extend(o.stuck.iter().cloned());
            into.push(report::traffic_figures(&o));
        }
    }
    let sides = vec![
        ("with stuck", report::spreads(&with, TRAFFIC.len())),
        ("without stuck", report::spreads(&without, TRAFFIC.len())),
    ];
    let title = format!(
        "slow: {healthy} healthy + {stuck} stuck receivers on {} ({})",
        target.name,
        load.describe()
    );
    report::table(&title, &TRAFFIC, &sides);
    println!("\nstuck receivers over all runs:");
    for e in &ends {
        println!("- {e:?}");
    }
    let closed = ends
        .iter()
        .filter(|e| !matches!(e, StuckEnd::Open { .. }))
        .count();
    println!("closed by the server: {closed} of {}", ends.len());
    println!("errors of healthy receivers over all runs: {errors}");
    Ok(errors)
}
