//! The write side of a session: heartbeats, pongs, the error text, the close
//! frame, and for receivers the chunks of their feed in batches.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::OpCode;
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tokio::time::{interval_at, timeout, Instant, MissedTickBehavior};
use tokio_util::sync::WaitForCancellationFuture;

use super::frames::{close_payload, write_frame, FrameWriter};
use super::{BoxWrite, Close, Closer, Limits, Outgoing, SessionInfo};
use crate::hub::{Feed, FeedEvent, InvalidKey, Subscription, WaitTicket};

/// Text sent to a receiver whose key does not match the publisher's.
pub const INVALID_KEY_TEXT: &str = "ERROR: Invalid streaming key";

/// How long the close frame may take before the socket is just dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a writer's chunks come from.
pub(super) enum Source {
    None,
    Waiting(WaitTicket),
    Active(Feed),
    Refused,
}

impl From<Subscription> for Source {
    fn from(sub: Subscription) -> Self {
        match sub {
            Subscription::Ready(Ok(feed)) => Self::Active(feed),
            Subscription::Ready(Err(InvalidKey)) => Self::Refused,
            Subscription::Waiting(ticket) => Self::Waiting(ticket),
        }
    }
}

/// What one turn of the loop produced.
enum Step {
    Continue,
    /// Stop, then send a close frame.
    Close(Close),
    /// Stop without a close frame (the stream is mid-frame or dead).
    Abort,
}

pub(super) async fn run(
    mut w: BoxWrite,
    mut source: Source,
    mut out: mpsc::Receiver<Outgoing>,
    closer: Arc<Closer>,
    limits: Limits,
    info: SessionInfo,
) {
    let mut heartbeat = interval_at(Instant::now() + limits.heartbeat, limits.heartbeat);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut frames = FrameWriter::default();
    let mut batch: Vec<Bytes> = Vec::new();
    announce(&source, &info);
    // Created once: a fresh cancellation future per turn costs a lock on the token's tree.
    let cancelled = closer.token.cancelled();
    tokio::pin!(cancelled);
    let step = loop {
        let step = tokio::select! {
            biased;
            () = &mut cancelled => Step::Close(closer.reason()),
            Some(Outgoing::Pong(p)) = out.recv() => io_step(write_frame(&mut w, OpCode::Pong, &p).await),
            _ = heartbeat.tick() => io_step(write_frame(&mut w, OpCode::Text, b"h").await),
            event = next_event(&mut source, &mut batch) => match event {
                Event::Started(started) => start(&mut source, started, &info),
                Event::Feed(event) => {
                    let cancelled = cancelled.as_mut();
                    feed_step(event, &mut w, &mut source, &mut batch, &mut frames, cancelled, &info).await
                }
            },
        };
        match step {
            Step::Continue => {}
            other => break other,
        }
    };
    if let Step::Close(close) = step {
        closer.close(close);
        if close == Close::INVALID_KEY {
            let _ = timeout(CLOSE_TIMEOUT, send_error(&mut w)).await;
        }
        let payload = close_payload(close.code, close.reason);
        let _ = timeout(CLOSE_TIMEOUT, write_frame(&mut w, OpCode::Close, &payload)).await;
    } else {
        closer.close(Close::PROTOCOL);
    }
}

fn announce(source: &Source, info: &SessionInfo) {
    match source {
        Source::Waiting(_) => {
            tracing::info!(target: "request", channel = %info.channel, kind = info.kind.as_str(), "{} play idle", info.tag())
        }
        Source::Active(_) => {
            tracing::info!(target: "request", channel = %info.channel, kind = info.kind.as_str(), "{} play start", info.tag())
        }
        Source::None | Source::Refused => {}
    }
}

fn io_step(result: std::io::Result<()>) -> Step {
    match result {
        Ok(()) => Step::Continue,
        Err(_) => Step::Abort,
    }
}

enum Event {
    Started(Result<Feed, InvalidKey>),
    Feed(FeedEvent),
}

/// The next thing the source has for us (cancel-safe).
async fn next_event(source: &mut Source, batch: &mut Vec<Bytes>) -> Event {
    match source {
        Source::Waiting(ticket) => Event::Started(ticket.started().await),
        Source::Refused => Event::Started(Err(InvalidKey)),
        Source::Active(feed) => Event::Feed(feed.next_batch(batch).await),
        Source::None => std::future::pending().await,
    }
}

fn start(source: &mut Source, started: Result<Feed, InvalidKey>, info: &SessionInfo) -> Step {
    match started {
        Ok(feed) => {
            *source = Source::Active(feed);
            announce(source, info);
            Step::Continue
        }
        Err(InvalidKey) => {
            *source = Source::None;
            tracing::info!(target: "request", channel = %info.channel, "{} invalid streaming key", info.tag());
            Step::Close(Close::INVALID_KEY)
        }
    }
}

async fn feed_step<W: AsyncWrite + Unpin>(
    event: FeedEvent,
    w: &mut W,
    source: &mut Source,
    batch: &mut Vec<Bytes>,
    frames: &mut FrameWriter,
    cancelled: Pin<&mut WaitForCancellationFuture<'_>>,
    info: &SessionInfo,
) -> Step {
    let Source::Active(feed) = source else {
        return Step::Continue;
    };
    match event {
        FeedEvent::End => Step::Close(Close::END_OF_STREAM),
        FeedEvent::Lagged(lagged) => kicked(lagged.behind_bytes, info, Step::Close(Close::LAGGING)),
        FeedEvent::Data => {
            // Biased: a write that completes at once never pays for the lag check.
            let step = tokio::select! {
                biased;
                result = frames.write_binary(w, batch) => {
                    info.metrics.chunks_out.inc_by(batch.len() as u64);
                    info.metrics.bytes_out.inc_by(batch.iter().map(|c| c.len() as u64).sum());
                    io_step(result)
                }
                lagged = feed.lagged() => kicked(lagged.behind_bytes, info, Step::Abort),
                () = cancelled => Step::Abort,
            };
            batch.clear();
            step
        }
    }
}

fn kicked(behind: u64, info: &SessionInfo, step: Step) -> Step {
    info.metrics.receivers_kicked.inc();
    tracing::warn!(target: "request", channel = %info.channel, behind_bytes = behind, "{} receiver too slow: over its queue bound, closing", info.tag());
    step
}

/// Sends the refusal text before the close frame.
async fn send_error<W: AsyncWrite + Unpin>(w: &mut W) -> std::io::Result<()> {
    write_frame(w, OpCode::Text, INVALID_KEY_TEXT.as_bytes()).await
}
