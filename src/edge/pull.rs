//! The task of one pulled channel: race the origins for the first chunk, feed
//! the winner's chunks to the broadcast, end or lose it, linger when nobody plays.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use tokio::time::{interval, Instant, MissedTickBehavior};

use super::upstream::{attempt, AttemptError, Ended, Incoming, Upstream};
use super::Edge;
use crate::config::mask;
use crate::hub::{Broadcast, PublisherClaim};
use crate::metrics::ReasonLabel;

/// Chunks appended before local receivers are woken even if more are ready.
const WAKE_EVERY: usize = 16;

/// Why a pull ended (the `reason` label of `edge_pulls_ended`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The publisher ended at the origin (close 1000).
    Ended,
    Lost,
    InvalidKey,
    Linger,
    Killed,
    Shutdown,
}

impl End {
    fn label(self) -> &'static str {
        match self {
            Self::Ended => "end",
            Self::Lost => "lost",
            Self::InvalidKey => "invalid_key",
            Self::Linger => "linger",
            Self::Killed => "killed",
            Self::Shutdown => "shutdown",
        }
    }
}

/// Runs the pull of `channel` until it ends. Receivers still waiting then (a
/// refused key left those with another; a kick during the race left them all)
/// start the next pull, with the first one's key.
pub(super) async fn run(
    edge: Arc<Edge>,
    mut claim: PublisherClaim,
    channel: String,
    mut key: String,
) {
    loop {
        edge.metrics.pulls_started.inc();
        tracing::info!(channel, origins = edge.settings.origins.len(), "pull start");
        let end = pull(&edge, &claim, &channel, &key).await;
        edge.metrics
            .pulls_ended
            .get_or_create(&ReasonLabel {
                reason: end.label(),
            })
            .inc();
        tracing::info!(channel, reason = end.label(), "pull end");
        if end == End::Shutdown {
            return;
        }
        if end == End::InvalidKey {
            claim.refuse_waiters(&key);
        }
        drop(claim);
        let Some((next, next_key)) = edge.hub.pull_for_waiters(&channel) else {
            return;
        };
        (claim, key) = (next, next_key);
    }
}

type Attempt =
    Pin<Box<dyn Future<Output = (usize, Result<(Upstream, Option<Bytes>), AttemptError>)> + Send>>;

/// One pull: the race, then the stream.
async fn pull(edge: &Edge, claim: &PublisherClaim, channel: &str, key: &str) -> End {
    let mut linger = Linger::new(edge.settings.linger);
    let mut check = interval(linger.tick());
    check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let kill = claim.kill_token();
    let shutdown = edge.shutdown.clone();
    let mut attempts: FuturesUnordered<Attempt> = FuturesUnordered::new();
    for index in 0..edge.settings.origins.len() {
        attempts.push(try_origin(edge, index, channel, key, Duration::ZERO));
    }
    let (index, mut upstream, first) = loop {
        tokio::select! {
            Some((index, result)) = attempts.next() => match result {
                Ok((upstream, Some(first))) => break (index, upstream, first),
                Ok((upstream, None)) => {
                    tracing::info!(channel, origin = %shown(edge, index), "origin refused the streaming key");
                    upstream.close().await;
                    return End::InvalidKey;
                }
                Err(e) => {
                    edge.metrics.upstream_failures.get_or_create(&ReasonLabel { reason: e.label() }).inc();
                    let retry = edge.settings.retry;
                    tracing::info!(channel, origin = %shown(edge, index), error = %e, retry_seconds = retry.as_secs(), "origin not available");
                    attempts.push(try_origin(edge, index, channel, key, retry));
                }
            },
            _ = check.tick() => {
                if linger.expired(edge.hub.audience(channel)) && claim.release_if_idle() {
                    return End::Linger;
                }
            }
            () = kill.cancelled() => return End::Killed,
            () = shutdown.cancelled() => return End::Shutdown,
        }
    };
    // The other origins' attempts end here: their connections are dropped.
    drop(attempts);
    tracing::info!(channel, origin = %shown(edge, index), "origin chosen");
    upstream.streaming();
    let broadcast = claim.activate(None);
    append(edge, &broadcast, first);
    broadcast.wake_receivers();
    let end = stream(edge, claim, channel, &mut upstream, &broadcast, &mut linger).await;
    match end {
        Err(ended) => {
            edge.metrics
                .upstream_failures
                .get_or_create(&ReasonLabel { reason: "lost" })
                .inc();
            tracing::warn!(channel, origin = %shown(edge, index), why = %ended, "origin lost");
            broadcast.mark_lost();
            End::Lost
        }
        Ok(end) => {
            if end != End::Ended {
                upstream.close().await;
            }
            end
        }
    }
}

/// Feeds the upstream's chunks to `broadcast` until the pull ends (`Err`: the origin was lost).
async fn stream(
    edge: &Edge,
    claim: &PublisherClaim,
    channel: &str,
    upstream: &mut Upstream,
    broadcast: &Broadcast,
    linger: &mut Linger,
) -> Result<End, Ended> {
    let mut check = interval(linger.tick());
    check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let kill = claim.kill_token();
    let shutdown = edge.shutdown.clone();
    let mut unannounced = 0usize;
    let mut unannounced_bytes = 0u64;
    // As a publisher's reader: a burst ends at half the ingest lead, so the hold is checked in time.
    let burst_bytes = match broadcast.ingest().lead() {
        0 => u64::MAX,
        lead => lead / 2,
    };
    loop {
        let ready = if unannounced < WAKE_EVERY && unannounced_bytes < burst_bytes {
            upstream.try_next()
        } else {
            None
        };
        let incoming = match ready {
            Some(incoming) => incoming,
            None => {
                // One wake-up for a burst: the socket has nothing more to read right now.
                if unannounced > 0 {
                    broadcast.wake_receivers();
                    unannounced = 0;
                    unannounced_bytes = 0;
                    // The server is the limit: the origin is held back through TCP, as a
                    // publisher would be (its receiver of this edge then skips, or is cut).
                    tokio::select! {
                        paused = broadcast.hold() => if let Some(paused) = paused {
                            edge.metrics.ingest_pauses.inc();
                            edge.metrics.ingest_paused_seconds.inc_by(paused.as_secs_f64());
                        },
                        () = kill.cancelled() => return Ok(End::Killed),
                        () = shutdown.cancelled() => return Ok(End::Shutdown),
                    }
                }
                tokio::select! {
                    biased;
                    incoming = upstream.next() => incoming,
                    _ = check.tick() => {
                        if linger.expired(edge.hub.audience(channel)) && claim.release_if_idle() {
                            return Ok(End::Linger);
                        }
                        continue;
                    }
                    () = kill.cancelled() => return Ok(End::Killed),
                    () = shutdown.cancelled() => return Ok(End::Shutdown),
                }
            }
        };
        match incoming {
            Incoming::Chunk(chunk) => {
                unannounced_bytes += chunk.len() as u64;
                append(edge, broadcast, chunk);
                unannounced += 1;
            }
            Incoming::End(Ended::Closed(Some(1000))) => {
                broadcast.wake_receivers();
                return Ok(End::Ended);
            }
            Incoming::End(ended) => return Err(ended),
            // Only sent before a stream starts; mid-stream it is a broken origin.
            Incoming::InvalidKey => return Err(Ended::Failed("invalid key mid-stream".to_owned())),
        }
    }
}

/// Appends one chunk exactly as a publisher's reader does (the same counters).
fn append(edge: &Edge, broadcast: &Broadcast, chunk: Bytes) {
    edge.metrics.chunks_in.inc();
    edge.metrics.bytes_in.inc_by(chunk.len() as u64);
    broadcast.append(chunk);
}

fn try_origin(edge: &Edge, index: usize, channel: &str, key: &str, delay: Duration) -> Attempt {
    let base = edge.settings.origins[index].as_str().trim_end_matches('/');
    let url = format!("{base}/{channel}/{key}/receive");
    let (limits, metrics) = (edge.limits, edge.metrics.clone());
    Box::pin(async move {
        tokio::time::sleep(delay).await;
        (index, attempt(url, limits, metrics).await)
    })
}

/// An origin for a log line: its base URL (credentials masked), never a key.
fn shown(edge: &Edge, index: usize) -> String {
    edge.settings
        .origins
        .get(index)
        .map(mask)
        .unwrap_or_default()
}

/// Tracks how long the channel has had no local receiver.
struct Linger {
    linger: Duration,
    since: Option<Instant>,
}

impl Linger {
    fn new(linger: Duration) -> Self {
        Self {
            linger,
            since: None,
        }
    }

    /// How often the audience is checked.
    fn tick(&self) -> Duration {
        (self.linger / 4).clamp(Duration::from_millis(50), Duration::from_millis(500))
    }

    /// True once the audience has been zero for the linger time.
    fn expired(&mut self, audience: usize) -> bool {
        if audience > 0 {
            self.since = None;
            return false;
        }
        let since = *self.since.get_or_insert_with(Instant::now);
        since.elapsed() >= self.linger
    }
}
