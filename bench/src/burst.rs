//! `burst`: N WebSocket upgrades started at the same instant (no pacing, no
//! parallelism limit); the time from that instant to each completed upgrade
//! (the 101 read). A short listen backlog shows here as SYN retransmits:
//! upgrades that take a second or more.

use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::task::JoinSet;

use crate::client;
use crate::report;
use crate::stats::Histogram;
use crate::target::Target;

/// What one connect may take before it counts as failed.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

const NAMES: [&str; 6] = [
    "upgraded",
    "failed",
    "upgrade p50 s",
    "upgrade p90 s",
    "upgrade p99 s",
    "upgrade max s",
];

async fn once(t: &Target, n: usize, run: usize) -> Result<Vec<Option<f64>>> {
    let path = format!(
        "/bench-{}-burst-{n}-r{run}/benchkey/receive",
        std::process::id()
    );
    let start = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..n {
        let (ep, path) = (t.endpoint.clone(), path.clone());
        set.spawn(async move {
            let done = tokio::time::timeout(UPGRADE_TIMEOUT, client::connect(&ep, &path, None))
                .await
                .ok()
                .and_then(Result::ok);
            done.map(|stream| (start.elapsed(), stream))
        });
    }
    let mut times = Histogram::default();
    let mut held = Vec::with_capacity(n);
    let mut failed = 0usize;
    while let Some(joined) = set.join_next().await {
        match joined.ok().flatten() {
            Some((took, stream)) => {
                times.record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
                held.push(stream);
            }
            None => failed += 1,
        }
    }
    drop(held);
    // Let the target see the closes before the next run.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s = |us: u64| Some(us as f64 / 1e6);
    Ok(vec![
        Some(times.count() as f64),
        Some(failed as f64),
        s(times.quantile(0.5)),
        s(times.quantile(0.9)),
        s(times.quantile(0.99)),
        s(times.max()),
    ])
}

/// Runs `burst` for each N on each target (interleaved) and prints one table per N.
pub(crate) async fn run(targets: &[&Target], counts: &[usize], runs: usize) -> Result<()> {
    for &n in counts {
        let mut per: Vec<Vec<Vec<Option<f64>>>> = vec![Vec::new(); targets.len()];
        for run in 0..runs {
            for (i, t) in targets.iter().enumerate() {
                let figures = once(t, n, run).await?;
                eprintln!("burst N={n} [{}] run {run}: {figures:?}", t.name);
                per[i].push(figures);
            }
        }
        let sides: Vec<_> = targets
            .iter()
            .zip(&per)
            .map(|(t, runs)| (t.name, report::spreads(runs, NAMES.len())))
            .collect();
        let title = format!("burst: {n} upgrades started at once, {runs} runs");
        report::table(&title, &NAMES, &sides);
    }
    Ok(())
}
