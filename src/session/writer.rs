//! The write side of a session: heartbeats, pongs, the error text, the close
//! frame, and for receivers the chunks of their feed in batches.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::OpCode;
use tokio::io::AsyncWrite;
use tokio::time::{interval_at, timeout, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::frames::{close_payload, write_frame, FrameWriter};
use super::signals::{Close, Side, Signals};
use super::{BoxWrite, Limits, SessionInfo};
use crate::hub::{Feed, FeedEvent, InvalidKey, Lagged, Subscription, WaitTicket};
use crate::metrics::Open;

/// Text sent to a receiver whose key does not match the publisher's.
pub(super) const INVALID_KEY_TEXT: &str = "ERROR: Invalid streaming key";

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
    /// Stop in the middle of a batch: finish the frame in progress, then send a close frame.
    Interrupted(Close),
    /// Stop without a close frame (the stream is mid-frame or dead).
    Abort,
}

pub(super) async fn run(
    mut w: BoxWrite,
    mut source: Source,
    signals: Arc<Signals>,
    limits: Limits,
    info: SessionInfo,
    shutdown: CancellationToken,
) {
    let mut heartbeat = interval_at(Instant::now() + limits.heartbeat, limits.heartbeat);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut frames = FrameWriter::default();
    let mut batch: Vec<Bytes> = Vec::new();
    let mut phase = announce(&source, &info);
    // Order matters on the hot path: a waiting chunk is found before the timer and the
    // close signal are polled; the flag check keeps a busy writer from missing a close.
    let step = loop {
        if signals.is_closed() {
            break Step::Close(signals.reason());
        }
        if let Some(pong) = signals.take_pong() {
            let sent = control_write(&mut w, OpCode::Pong, &pong, &signals, limits).await;
            if let Step::Abort = sent {
                break Step::Abort;
            }
        }
        let step = tokio::select! {
            biased;
            event = next_event(&mut source, &mut batch) => match event {
                Event::Started(started) => start(&mut source, started, &info, &mut phase),
                Event::Feed(event) => {
                    let step = feed_step(event, &mut w, &mut source, &mut batch, &mut frames, &signals, &info).await;
                    // A stream that ends because the server is shutting down says so (1001).
                    match step {
                        Step::Close(Close::END_OF_STREAM) if shutdown.is_cancelled() => Step::Close(Close::SHUTDOWN),
                        other => other,
                    }
                }
            },
            _ = heartbeat.tick() => control_write(&mut w, OpCode::Text, b"h", &signals, limits).await,
            () = signals.signalled(Side::Writer) => Step::Continue,
        };
        match step {
            Step::Continue => {}
            other => break other,
        }
    };
    let close = match step {
        Step::Close(close) => close,
        Step::Interrupted(close) => {
            // Never a frame cut short: a receiver that was kicked for being slow gets
            // the idle timeout to take the rest of its frame, any other end the close timeout.
            let bound = if close == Close::LAGGING {
                limits.idle_timeout
            } else {
                CLOSE_TIMEOUT
            };
            let finished = tokio::select! {
                result = timeout(bound, frames.finish_frame(&mut w, &batch)) => matches!(result, Ok(Ok(()))),
                // A shutdown does not wait for a slow receiver's frame.
                () = shutdown.cancelled(), if close == Close::LAGGING => false,
            };
            if !finished {
                return signals.close(close);
            }
            close
        }
        Step::Continue | Step::Abort => return signals.close(Close::PROTOCOL),
    };
    batch.clear();
    signals.close(close);
    if close == Close::INVALID_KEY {
        let _ = timeout(CLOSE_TIMEOUT, send_error(&mut w)).await;
    }
    let payload = close_payload(close.code, close.reason);
    let _ = timeout(CLOSE_TIMEOUT, write_frame(&mut w, OpCode::Close, &payload)).await;
}

/// A heartbeat or pong: given up when the session closes or the client has not taken it
/// within the idle timeout (a client that never reads must not pin the session).
async fn control_write<W: AsyncWrite + Unpin>(
    w: &mut W,
    opcode: OpCode,
    payload: &[u8],
    signals: &Signals,
    limits: Limits,
) -> Step {
    tokio::select! {
        biased;
        written = timeout(limits.idle_timeout, write_frame(w, opcode, payload)) => match written {
            Ok(result) => io_step(result),
            Err(_) => Step::Abort,
        },
        () = signals.closed(Side::Writer) => Step::Abort,
    }
}

/// Logs and counts the receiver's state: waiting for a publisher, or playing.
fn announce(source: &Source, info: &SessionInfo) -> Option<Open> {
    match source {
        Source::Waiting(_) => {
            tracing::info!(target: "request", channel = %info.channel, kind = info.kind.as_str(), "{} play idle", info.tag);
            Some(Open::receiver(&info.metrics, "waiting"))
        }
        Source::Active(_) => {
            tracing::info!(target: "request", channel = %info.channel, kind = info.kind.as_str(), "{} play start", info.tag);
            info.metrics.receivers_started.inc();
            Some(Open::receiver(&info.metrics, "playing"))
        }
        Source::None | Source::Refused => None,
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

fn start(
    source: &mut Source,
    started: Result<Feed, InvalidKey>,
    info: &SessionInfo,
    phase: &mut Option<Open>,
) -> Step {
    match started {
        Ok(feed) => {
            *source = Source::Active(feed);
            *phase = announce(source, info);
            Step::Continue
        }
        Err(InvalidKey) => {
            *source = Source::None;
            *phase = None;
            tracing::info!(target: "request", channel = %info.channel, "{} invalid streaming key", info.tag);
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
    signals: &Signals,
    info: &SessionInfo,
) -> Step {
    let Source::Active(feed) = source else {
        return Step::Continue;
    };
    match event {
        FeedEvent::End => Step::Close(Close::END_OF_STREAM),
        FeedEvent::Lost => Step::Close(Close::ORIGIN_LOST),
        FeedEvent::Lagged(lagged) => kicked(lagged, signals, info, Step::Close(Close::LAGGING)),
        FeedEvent::Data => {
            // Biased: a write that completes at once never pays for the lag check.
            // An interrupted write keeps its batch: the frame in progress is finished.
            tokio::select! {
                biased;
                result = frames.write_binary(w, batch) => {
                    info.metrics.chunks_out.inc_by(batch.len() as u64);
                    info.metrics.bytes_out.inc_by(batch.iter().map(|c| c.len() as u64).sum());
                    batch.clear();
                    io_step(result)
                }
                lagged = feed.lagged() => kicked(lagged, signals, info, Step::Interrupted(Close::LAGGING)),
                () = signals.closed(Side::Writer) => Step::Interrupted(signals.reason()),
            }
        }
    }
}

fn kicked(lagged: Lagged, signals: &Signals, info: &SessionInfo, step: Step) -> Step {
    info.metrics.receivers_kicked.inc();
    signals.close(Close::LAGGING);
    tracing::warn!(target: "request", channel = %info.channel, behind_bytes = lagged.behind_bytes, cause = lagged.cause, "{} receiver too slow: over its queue bound, closing", info.tag);
    step
}

/// Sends the refusal text before the close frame.
async fn send_error<W: AsyncWrite + Unpin>(w: &mut W) -> std::io::Result<()> {
    write_frame(w, OpCode::Text, INVALID_KEY_TEXT.as_bytes()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(idle: Duration) -> Limits {
        Limits {
            heartbeat: Duration::from_secs(20),
            idle_timeout: idle,
            max_message_bytes: 1024,
        }
    }

    #[tokio::test]
    async fn a_control_write_to_a_client_that_never_reads_gives_up() {
        // An 8-byte pipe whose other end is never read: the write cannot complete.
        let (mut w, _peer) = tokio::io::duplex(8);
        let signals = Signals::default();
        let started = std::time::Instant::now();
        let write = control_write(
            &mut w,
            OpCode::Pong,
            &[0; 100],
            &signals,
            limits(Duration::from_millis(200)),
        );
        let step = timeout(Duration::from_secs(5), write)
            .await
            .expect("gave up in time");
        assert!(matches!(step, Step::Abort));
        assert!(started.elapsed() >= Duration::from_millis(200));

        let signals = Arc::new(Signals::default());
        let c = signals.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            c.close(Close::IDLE);
        });
        let started = std::time::Instant::now();
        let write = control_write(
            &mut w,
            OpCode::Text,
            &[0; 100],
            &signals,
            limits(Duration::from_secs(30)),
        );
        let step = timeout(Duration::from_secs(5), write)
            .await
            .expect("gave up in time");
        assert!(matches!(step, Step::Abort));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
