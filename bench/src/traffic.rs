//! One traffic run: M channels, each with one publisher, K healthy receivers
//! and S receivers that never read. Receivers connect first, then the
//! publishers send for `duration`; the run ends when every healthy receiver
//! has every chunk (or the drain time is over).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::client::{self, Endpoint};
use crate::procstat::{self, Proc, Usage};
use crate::publisher;
use crate::receiver::{self, RecvReport, StuckEnd};
use crate::stats::Histogram;
use crate::target::Target;

/// Connections opened at once.
const CONNECT_PARALLEL: usize = 64;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long healthy receivers may take to catch up after the last chunk.
const DRAIN: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(5);

/// What to send, to whom.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub channels: usize,
    pub receivers: usize,
    pub stuck: usize,
    pub chunk: usize,
    /// Bits per second per publisher; `None` = as fast as the window allows.
    pub rate_bps: Option<f64>,
    pub duration: Duration,
    /// Chunks a publisher may be ahead of its slowest healthy receiver.
    pub window: u64,
    pub verify_every: u64,
    /// Makes channel names unique per run.
    pub tag: String,
}

/// State shared by the publishers and receivers of one run.
pub(crate) struct Shared {
    pub epoch: Instant,
    pub plan: Plan,
    /// Per healthy receiver (channel-major): the next sequence number it expects;
    /// `u64::MAX` once it ended early.
    pub progress: Vec<AtomicU64>,
    /// Per channel: chunks published, `u64::MAX` while still publishing.
    pub published: Vec<AtomicU64>,
    pub waiting: AtomicBool,
    pub wake: Notify,
    pub stop: CancellationToken,
    pub masked: bool,
}

impl Shared {
    pub(crate) fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// The slowest healthy receiver of channel `c`.
    pub(crate) fn slowest(&self, c: usize) -> u64 {
        let k = self.plan.receivers;
        self.progress[c * k..(c + 1) * k]
            .iter()
            .map(|p| p.load(Ordering::Acquire))
            .min()
            .unwrap_or(u64::MAX)
    }
}

/// The result of one run.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub delivered_bytes: u64,
    pub elapsed: Duration,
    pub published: u64,
    pub latency: Histogram,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub corrupt: u64,
    /// Healthy receivers closed or failed before the end.
    pub failed: u64,
    pub failures: Vec<String>,
    pub stuck: Vec<StuckEnd>,
    pub server: Option<Usage>,
    /// The receive targets' processes together (a cascade's edges).
    pub edges: Option<Usage>,
    pub tool: Option<Usage>,
}

impl Outcome {
    pub(crate) fn errors(&self) -> u64 {
        self.lost + self.duplicated + self.reordered + self.corrupt + self.failed
    }
}

fn path(plan: &Plan, c: usize, kind: &str) -> String {
    format!("/{}-{c}/benchkey/{kind}", plan.tag)
}

/// Opens `count` connections to channel paths, at most `CONNECT_PARALLEL` at once.
pub(crate) async fn connect_many(
    ep: &Endpoint,
    paths: Vec<String>,
    rcvbuf: Option<u32>,
) -> Result<Vec<TcpStream>> {
    let gate = Arc::new(Semaphore::new(CONNECT_PARALLEL));
    let mut set = JoinSet::new();
    for (i, p) in paths.into_iter().enumerate() {
        let (ep, gate) = (ep.clone(), gate.clone());
        set.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let receiver = ep.play && !p.ends_with("/publish");
            let connect = async {
                if receiver {
                    client::request_play(&ep, &p, rcvbuf).await
                } else {
                    client::connect(&ep, &p, rcvbuf).await
                }
            };
            let s = tokio::time::timeout(CONNECT_TIMEOUT, connect)
                .await
                .context("connect timed out")??;
            Ok::<_, anyhow::Error>((i, s))
        });
    }
    let mut out: Vec<Option<TcpStream>> = Vec::new();
    while let Some(joined) = set.join_next().await {
        let (i, s) = joined??;
        if out.len() <= i {
            out.resize_with(i + 1, || None);
        }
        out[i] = Some(s);
    }
    Ok(out.into_iter().flatten().collect())
}

/// Runs `plan` against `target`: publishers on its endpoint, receivers spread
/// over its receive endpoints; its processes are sampled for CPU and peak RSS.
pub(crate) async fn run(target: &Target, plan: &Plan) -> Result<Outcome> {
    let (m, k) = (plan.channels, plan.receivers);
    let ep = &target.endpoint;
    let server = target.proc.as_ref();
    if let Some(p) = server {
        p.reset_peak();
    }
    for p in &target.receive_procs {
        p.reset_peak();
    }
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        plan: plan.clone(),
        progress: (0..m * k).map(|_| AtomicU64::new(0)).collect(),
        published: (0..m).map(|_| AtomicU64::new(u64::MAX)).collect(),
        waiting: AtomicBool::new(false),
        wake: Notify::new(),
        stop: CancellationToken::new(),
        masked: ep.masked,
    });
    let guard = shared.stop.clone().drop_guard();
    let kind = if ep.play { "play" } else { "receive" };
    let healthy = connect_receivers(target, plan, m * k).await?;
    let stuck_paths = (0..m * plan.stuck)
        .map(|i| path(plan, i / plan.stuck.max(1), kind))
        .collect();
    let stuck = connect_many(ep, stuck_paths, Some(16 * 1024)).await?;
    let mut receivers = JoinSet::new();
    for (i, s) in healthy.into_iter().enumerate() {
        if ep.play {
            receivers.spawn(receiver::healthy_play(s, shared.clone(), i));
        } else {
            receivers.spawn(receiver::healthy(s, shared.clone(), i));
        }
    }
    // Play requests were only sent: give the server time to register them
    // all as waiting, so that each gets the stream from its first chunk.
    let settle = if ep.play { 1000 } else { 200 };
    tokio::time::sleep(Duration::from_millis(settle)).await;
    let pubs = connect_many(ep, (0..m).map(|c| path(plan, c, "publish")).collect(), None).await?;
    let (server_before, tool_before) = (server.and_then(Proc::sample), Proc::this().sample());
    let edges_before = sample_all(&target.receive_procs);
    let start = Instant::now();
    let mut publishers = JoinSet::new();
    for (c, s) in pubs.into_iter().enumerate() {
        publishers.spawn(publisher::publish(s, shared.clone(), c));
    }
    wait_for_end(&shared, &mut receivers, plan).await;
    let (server_after, tool_after) = (server.and_then(Proc::sample), Proc::this().sample());
    let edges_after = sample_all(&target.receive_procs);
    let stuck_ends = receiver::drain_stuck(stuck, shared.plan.chunk, ep.play).await;
    drop(guard);
    let mut out = Outcome {
        server: procstat::usage(server_before, server_after),
        edges: summed(edges_before, edges_after),
        tool: procstat::usage(tool_before, tool_after),
        stuck: stuck_ends,
        ..Outcome::default()
    };
    while let Some(p) = publishers.join_next().await {
        match p? {
            Ok(n) => out.published += n,
            Err(e) => out.failures.push(format!("publisher: {e:#}")),
        }
    }
    while let Some(r) = receivers.join_next().await {
        absorb(&mut out, r?, &shared, start);
    }
    if out.published == 0 {
        bail!("nothing was published: {:?}", out.failures);
    }
    Ok(out)
}

/// Opens `count` healthy receivers (channel-major), receiver `i` on its target's
/// `i`-th receive endpoint (round robin), keeping their order.
async fn connect_receivers(target: &Target, plan: &Plan, count: usize) -> Result<Vec<TcpStream>> {
    let k = plan.receivers.max(1);
    let spread = target.receive.len().max(1);
    let mut slots: Vec<Option<TcpStream>> = (0..count).map(|_| None).collect();
    for e in 0..spread {
        let mine: Vec<usize> = (0..count).filter(|i| i % spread == e).collect();
        let ep = target.receiver_endpoint(e);
        let kind = if ep.play { "play" } else { "receive" };
        let paths = mine.iter().map(|i| path(plan, i / k, kind)).collect();
        let streams = connect_many(ep, paths, None).await?;
        for (i, s) in mine.into_iter().zip(streams) {
            slots[i] = Some(s);
        }
    }
    Ok(slots.into_iter().flatten().collect())
}

fn sample_all(procs: &[Proc]) -> Option<Vec<procstat::Sample>> {
    procs
        .iter()
        .map(Proc::sample)
        .collect::<Option<Vec<_>>>()
        .filter(|v| !v.is_empty())
}

/// What several processes used together: CPU summed, the largest peak.
fn summed(
    before: Option<Vec<procstat::Sample>>,
    after: Option<Vec<procstat::Sample>>,
) -> Option<Usage> {
    let (before, after) = (before?, after?);
    let each: Option<Vec<Usage>> = before
        .into_iter()
        .zip(after)
        .map(|(b, a)| procstat::usage(Some(b), Some(a)))
        .collect();
    each.map(|u| Usage {
        cpu_s: u.iter().map(|u| u.cpu_s).sum(),
        peak_rss_kib: u.iter().map(|u| u.peak_rss_kib).max().unwrap_or(0),
    })
}

/// Waits until every publisher is done and every healthy receiver caught up.
async fn wait_for_end(shared: &Shared, receivers: &mut JoinSet<RecvReport>, plan: &Plan) {
    let publish_deadline = Instant::now() + plan.duration + DRAIN;
    while shared
        .published
        .iter()
        .any(|p| p.load(Ordering::Acquire) == u64::MAX)
        && Instant::now() < publish_deadline
    {
        tokio::time::sleep(POLL).await;
    }
    let drain_deadline = Instant::now() + DRAIN;
    let k = plan.receivers.max(1);
    while Instant::now() < drain_deadline && !receivers.is_empty() {
        let behind = shared.progress.iter().enumerate().any(|(i, p)| {
            let fin = shared.published[i / k].load(Ordering::Acquire);
            p.load(Ordering::Acquire) < fin
        });
        if !behind {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
}

fn absorb(out: &mut Outcome, mut r: RecvReport, shared: &Shared, start: Instant) {
    let k = shared.plan.receivers.max(1);
    let published = shared.published[r.index / k].load(Ordering::Acquire);
    if published != u64::MAX {
        r.checker.finish(published);
    }
    out.delivered_bytes += r.bytes;
    if let Some(t) = r.last_at {
        out.elapsed = out.elapsed.max(t.saturating_duration_since(start));
    }
    out.latency.merge(&r.latency);
    out.lost += r.checker.lost;
    out.duplicated += r.checker.duplicated;
    out.reordered += r.checker.reordered;
    out.corrupt += r.corrupt;
    if let Some(f) = r.failure {
        out.failed += 1;
        if out.failures.len() < 5 {
            out.failures.push(f);
        }
    }
}
