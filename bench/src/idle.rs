//! `idle`: N receivers connect and wait (no publisher); the server's resident
//! memory grows by what it keeps per waiting connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::client::{self, HEARTBEAT};
use crate::report;
use crate::stats::Spread;
use crate::target::Target;
use crate::traffic;

const NAMES: [&str; 5] = [
    "connections held",
    "RSS growth MiB",
    "RSS per connection KiB",
    "peak RSS MiB",
    "connect time s",
];

/// Holds one idle connection: drops what it reads, sends the heartbeat.
async fn hold(stream: TcpStream, masked: bool, stop: CancellationToken, ended: Arc<AtomicUsize>) {
    let beat = client::heartbeat_frame(masked);
    let (mut read, mut write) = stream.into_split();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    let mut buf = [0u8; 256];
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => if write.write_all(&beat).await.is_err() { break },
            n = read.read(&mut buf) => if !matches!(n, Ok(n) if n > 0) { break },
        }
    }
    ended.fetch_add(1, Ordering::Relaxed);
}

async fn once(
    t: &Target,
    n: usize,
    channels: usize,
    hold_for: Duration,
    run: usize,
) -> Result<Vec<Option<f64>>> {
    let tag = format!("bench-{}-idle-{n}-r{run}", std::process::id());
    let before = t.proc.as_ref().and_then(|p| {
        p.reset_peak();
        p.sample()
    });
    let started = std::time::Instant::now();
    let paths = (0..n)
        .map(|i| format!("/{tag}-{}/benchkey/receive", i % channels.max(1)))
        .collect();
    let streams = traffic::connect_many(&t.endpoint, paths, None).await?;
    let connect_s = started.elapsed().as_secs_f64();
    let stop = CancellationToken::new();
    let ended = Arc::new(AtomicUsize::new(0));
    for s in streams {
        tokio::spawn(hold(s, t.endpoint.masked, stop.clone(), ended.clone()));
    }
    tokio::time::sleep(hold_for).await;
    let after = t.proc.as_ref().and_then(|p| p.sample());
    let held = n - ended.load(Ordering::Relaxed);
    stop.cancel();
    // Let the target see the closes before the next run measures its baseline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let growth = match (before, after) {
        (Some(b), Some(a)) => Some(a.rss_kib as f64 - b.rss_kib as f64),
        _ => None,
    };
    Ok(vec![
        Some(held as f64),
        growth.map(|g| g / 1024.0),
        growth.map(|g| g / n.max(1) as f64),
        after.map(|a| a.hwm_kib as f64 / 1024.0),
        Some(connect_s),
    ])
}

/// Runs `idle` for each N on each target and prints one table per N.
pub(crate) async fn run(
    targets: &[&Target],
    counts: &[usize],
    channels: usize,
    hold_for: Duration,
    runs: usize,
) -> Result<()> {
    for &n in counts {
        let mut sides: Vec<(&str, Vec<Option<Spread>>)> = Vec::new();
        let mut per: Vec<Vec<Vec<Option<f64>>>> = vec![Vec::new(); targets.len()];
        for run in 0..runs {
            for (i, t) in targets.iter().enumerate() {
                let figures = once(t, n, channels, hold_for, run).await?;
                eprintln!("idle N={n} [{}] run {run}: {figures:?}", t.name);
                per[i].push(figures);
            }
        }
        for (t, runs) in targets.iter().zip(&per) {
            sides.push((t.name, report::spreads(runs, NAMES.len())));
        }
        let title = format!(
            "idle: {n} receivers on {channels} channel(s), held {:.0} s, {runs} runs",
            hold_for.as_secs_f64()
        );
        report::table(&title, &NAMES, &sides);
    }
    Ok(())
}
