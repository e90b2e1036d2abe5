//! The read side of a session: frames in, messages reassembled under the size
//! bound, liveness tracked; a publisher's binary messages go to its broadcast.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use fastwebsockets::{after_handshake_split, OpCode, Role, WebSocketError, WebSocketRead};
use std::future::{poll_fn, Future};
use std::task::Poll;

use super::activity::Activity;
use super::signals::{Close, Signals};
use super::trickle::{OwnedFrame, Trickle};
use super::{BoxRead, Limits, SessionInfo};
use crate::hub::Broadcast;

/// Chunks appended before receivers are woken even if more are ready to read.
const WAKE_EVERY: usize = 16;

/// A message being reassembled from fragments.
struct Partial {
    opcode: OpCode,
    len: usize,
    /// Kept for a publisher's binary messages, and for text messages (small and
    /// rare) to check that they are UTF-8.
    data: Option<BytesMut>,
}

/// A receiver that sends a frame larger than this gets a long-lived parser:
/// byte-at-a-time input is cheap only for the small, rare messages clients send.
const TRICKLE_MAX_FRAME: usize = 1024;

/// Where frames come from: a long-lived parser for publishers (and receivers that
/// send data), a trickle for the others.
pub(super) enum Input {
    /// A regular frame parser: publishers, and receivers that sent a large message.
    Parser(WebSocketRead<BoxRead>),
    /// Byte-at-a-time reads for the small, rare messages receivers send.
    Trickle(Trickle<BoxRead>),
}

impl Input {
    async fn frame(&mut self, max_message: usize) -> Result<OwnedFrame, WebSocketError> {
        let trickle = match self {
            Self::Parser(read) => {
                let mut ignore = |_| async { Ok::<(), std::io::Error>(()) };
                return read.read_frame(&mut ignore).await.map(OwnedFrame::from);
            }
            Self::Trickle(trickle) => trickle,
        };
        if !trickle.ready().await? {
            return Err(WebSocketError::UnexpectedEOF);
        }
        let frame = trickle.frame(max_message).await?;
        if frame.payload.len() > TRICKLE_MAX_FRAME {
            // The trickle never reads past a frame, so nothing is lost in the switch.
            let placeholder: BoxRead = Box::new(tokio::io::empty());
            let old = std::mem::replace(trickle, Trickle::new(placeholder));
            let mut read = parser(old.into_reader());
            read.set_max_message_size(max_message);
            *self = Self::Parser(read);
        }
        Ok(frame)
    }
}

/// A long-lived frame parser (replies to pings and closes are the writer's job).
pub(super) fn parser(read: BoxRead) -> WebSocketRead<BoxRead> {
    let (mut reader, _unused) = after_handshake_split(read, tokio::io::sink(), Role::Server);
    reader.set_auto_close(false);
    reader.set_auto_pong(false);
    reader
}

/// Reads until the peer closes, fails, goes silent or breaks a bound; records why in `signals`.
pub(super) async fn run(
    mut input: Input,
    activity: &Activity,
    broadcast: Option<Arc<Broadcast>>,
    signals: &Signals,
    limits: Limits,
    info: &SessionInfo,
) {
    let max_frame = limits.max_message_bytes.saturating_add(1);
    if let Input::Parser(read) = &mut input {
        read.set_max_message_size(max_frame);
    }
    let mut partial: Option<Partial> = None;
    let mut stats = Stats::new();
    let mut unannounced = 0usize;
    let mut unannounced_bytes = 0u64;
    // A burst ends early once it is half the ingest lead, so the hold is checked in time.
    let burst_bytes = broadcast
        .as_deref()
        .map_or(u64::MAX, |b| match b.ingest().lead() {
            0 => u64::MAX,
            lead => lead / 2,
        });
    loop {
        let next = activity.within_idle(input.frame(max_frame), limits.idle_timeout);
        tokio::pin!(next);
        // Receivers are woken once the publisher's socket has nothing more to read right
        // now (or after a few chunks): one wake-up and one write for a burst, no delay.
        let first = if unannounced >= WAKE_EVERY || unannounced_bytes >= burst_bytes {
            Poll::Pending
        } else {
            poll_fn(|cx| Poll::Ready(next.as_mut().poll(cx))).await
        };
        let result = match first {
            Poll::Ready(result) => result,
            Poll::Pending => {
                if let (Some(broadcast), true) = (broadcast.as_deref(), unannounced > 0) {
                    broadcast.wake_receivers();
                    unannounced = 0;
                    unannounced_bytes = 0;
                    hold(broadcast, activity, info).await;
                }
                next.await
            }
        };
        let frame = match result {
            None => return signals.close(Close::IDLE),
            Some(Err(WebSocketError::FrameTooLarge)) => return too_big(signals, info),
            Some(Err(e)) => {
                tracing::debug!(target: "request", error = %e, "{} read ended", info.tag);
                let close = if is_io(&e) {
                    Close::CLIENT_CLOSED
                } else if matches!(e, WebSocketError::InvalidUTF8) {
                    Close::INVALID_DATA
                } else {
                    Close::PROTOCOL
                };
                return signals.close(close);
            }
            Some(Ok(frame)) => frame,
        };
        if !valid(&frame) {
            tracing::debug!(target: "request", opcode = ?frame.opcode, "{} invalid frame", info.tag);
            return signals.close(Close::PROTOCOL);
        }
        // Control frames may come between the fragments of a message; only the final
        // data frame completes it.
        let completes =
            frame.fin && !matches!(frame.opcode, OpCode::Close | OpCode::Ping | OpCode::Pong);
        let payload = frame.payload;
        match frame.opcode {
            OpCode::Close => return signals.close(Close::CLIENT_CLOSED),
            OpCode::Ping => {
                signals.ping(payload.to_vec());
            }
            OpCode::Pong => {}
            OpCode::Text | OpCode::Binary => {
                if partial.is_some() {
                    return signals.close(Close::PROTOCOL);
                }
                let keep = frame.opcode == OpCode::Text
                    || (frame.opcode == OpCode::Binary && broadcast.is_some());
                let mut message = Partial {
                    opcode: frame.opcode,
                    len: 0,
                    data: keep.then(BytesMut::new),
                };
                if !message.append(payload, limits.max_message_bytes) {
                    return too_big(signals, info);
                }
                partial = Some(message);
            }
            OpCode::Continuation => {
                let Some(message) = partial.as_mut() else {
                    return signals.close(Close::PROTOCOL);
                };
                if !message.append(payload, limits.max_message_bytes) {
                    return too_big(signals, info);
                }
            }
        }
        let message = if completes { partial.take() } else { None };
        if message.as_ref().is_some_and(|m| !m.is_text_ok()) {
            tracing::debug!(target: "request", "{} text message is not UTF-8", info.tag);
            return signals.close(Close::INVALID_DATA);
        }
        let delivered =
            message.and_then(|message| deliver(message, broadcast.as_deref(), &mut stats, info));
        if let Some(len) = delivered {
            unannounced += 1;
            unannounced_bytes += len as u64;
        } else if let (Some(broadcast), true) = (broadcast.as_deref(), unannounced > 0) {
            // Any other frame (ping, text, a fragment) announces what came before it.
            broadcast.wake_receivers();
            unannounced = 0;
            unannounced_bytes = 0;
        }
    }
}

/// What the frame parser leaves to us (it checks the reserved bits, the opcode, that
/// control frames are final and pings at most 125 bytes): the mask (§5.1), the
/// size of every control frame (§5.5) and the close payload (§5.5.1, §7.4).
fn valid(frame: &OwnedFrame) -> bool {
    let control = matches!(frame.opcode, OpCode::Close | OpCode::Ping | OpCode::Pong);
    if !frame.masked || (control && frame.payload.len() > 125) {
        return false;
    }
    frame.opcode != OpCode::Close || valid_close(&frame.payload)
}

/// An empty close payload, or a code an endpoint may send and a UTF-8 reason.
fn valid_close(payload: &[u8]) -> bool {
    match payload {
        [] => true,
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            // §7.4.1 and the IANA registry; 1004-1006 and 1015 are never sent on the wire.
            let allowed = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            allowed && std::str::from_utf8(reason).is_ok()
        }
        [_] => false,
    }
}

impl Partial {
    /// Adds a fragment; false when the message grows over `max`.
    fn append(&mut self, payload: BytesMut, max: usize) -> bool {
        self.len = self.len.saturating_add(payload.len());
        if self.len > max {
            return false;
        }
        if let Some(data) = self.data.as_mut() {
            if data.is_empty() {
                *data = payload;
            } else {
                data.extend_from_slice(&payload);
            }
        }
        true
    }

    /// False for a text message that is not UTF-8 (RFC 6455 §8.1).
    fn is_text_ok(&self) -> bool {
        self.opcode != OpCode::Text
            || self
                .data
                .as_deref()
                .is_none_or(|data| std::str::from_utf8(data).is_ok())
    }
}

/// Appends a publisher's binary message to its broadcast; the chunk's length when one was added.
fn deliver(
    message: Partial,
    broadcast: Option<&Broadcast>,
    stats: &mut Stats,
    info: &SessionInfo,
) -> Option<usize> {
    let (Some(broadcast), Some(data), OpCode::Binary) = (broadcast, message.data, message.opcode)
    else {
        return None;
    };
    let chunk: Bytes = data.freeze();
    let len = chunk.len();
    stats.chunk(len, info);
    broadcast.append(chunk);
    // Counted once appended: a chunk the metrics show is in the log.
    info.metrics.chunks_in.inc();
    info.metrics.bytes_in.inc_by(len as u64);
    Some(len)
}

/// Stops reading while the receivers are behind ([`crate::hub::ingest`]: TCP then pushes back on the
/// publisher); the pause is not the publisher's silence.
async fn hold(broadcast: &Broadcast, activity: &Activity, info: &SessionInfo) {
    if let Some(paused) = broadcast.hold().await {
        activity.touch();
        info.metrics.ingest_pauses.inc();
        info.metrics
            .ingest_paused_seconds
            .inc_by(paused.as_secs_f64());
        tracing::debug!(target: "request", paused_ms = paused.as_millis() as u64, "{} ingest held: receivers behind", info.tag);
    }
}

fn too_big(signals: &Signals, info: &SessionInfo) {
    tracing::warn!(target: "request", "{} message over the size bound; closing", info.tag);
    signals.close(Close::TOO_BIG);
}

fn is_io(e: &WebSocketError) -> bool {
    matches!(
        e,
        WebSocketError::IoError(_) | WebSocketError::UnexpectedEOF
    )
}

/// Chunk sizes and bitrate, logged under `LOG_DEBUG`.
struct Stats {
    since: Instant,
    bytes: u64,
    chunks: u64,
}

impl Stats {
    fn new() -> Self {
        Self {
            since: Instant::now(),
            bytes: 0,
            chunks: 0,
        }
    }

    fn chunk(&mut self, len: usize, info: &SessionInfo) {
        self.bytes += len as u64;
        self.chunks += 1;
        tracing::debug!(target: "request", size = len, "{} chunk", info.tag);
        let elapsed = self.since.elapsed();
        if elapsed.as_secs() >= 10 {
            let kbps = self.bytes as f64 * 8.0 / 1000.0 / elapsed.as_secs_f64();
            tracing::debug!(target: "request", kbps = kbps as u64, chunks = self.chunks, "{} bitrate", info.tag);
            *self = Self::new();
        }
    }
}
