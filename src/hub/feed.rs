//! One receiver's view of a broadcast: its cache replay, then the live log from
//! its cursor. Used by the receiver's writer task. A receiver that falls out of
//! its window skips to the newest join point or is closed ([`overload`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;

use super::log::overload::{self, Skip, SkipHistory};
use super::log::Start;
use super::stats::{ReceiverStats, Who};
use super::wake::WakeHandle;
use super::{Broadcast, Kind, Lagged};

/// Most chunks handed out in one batch (one vectored write).
pub(crate) const MAX_BATCH_CHUNKS: usize = 256;
/// About the most bytes handed out in one batch.
pub(crate) const MAX_BATCH_BYTES: u64 = 4 << 20;

#[derive(Debug)]
pub(crate) struct Feed {
    broadcast: Arc<Broadcast>,
    replay: VecDeque<Bytes>,
    cursor: u64,
    /// Skipping to the next join point; this init segment goes first.
    await_join: Option<Bytes>,
    probe: bool,
    waiter: WakeHandle,
    /// Probe: one chunk, then the end.
    remaining: Option<usize>,
    /// Its figures, registered with the broadcast while the feed lives.
    stats: Arc<ReceiverStats>,
    /// A skip decided while a batch was being written, handed out next.
    pending: Option<Box<Skip>>,
    /// When `pending` was planned.
    pending_since: Option<tokio::time::Instant>,
    skips: SkipHistory,
}

fn sum(chunks: &[Bytes]) -> u64 {
    chunks.iter().map(|c| c.len() as u64).sum()
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.broadcast.remove_receiver(self.stats_key());
        self.broadcast.ingest().changed();
    }
}

/// What the writer does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FeedEvent {
    /// Chunks were appended to the batch.
    Data,
    /// The publisher is gone (or the probe got its chunk) and everything was handed out.
    End,
    /// As `End`, but the pulled broadcast lost its origin.
    Lost,
    /// Over its bound and it cannot skip: close it (1008).
    Lagged(Lagged),
}

impl Feed {
    pub(super) fn new(
        broadcast: Arc<Broadcast>,
        start: Start,
        position: u64,
        kind: Kind,
        who: Who,
    ) -> Self {
        let probe = kind == Kind::Probe;
        let waiter = broadcast.register();
        let replay = sum(&start.replay);
        let stats = Arc::new(ReceiverStats::new(
            who,
            kind,
            start.cursor,
            position,
            replay,
        ));
        let feed = Self {
            stats,
            pending: None,
            pending_since: None,
            skips: SkipHistory::default(),
            broadcast,
            replay: start.replay.into(),
            cursor: start.cursor,
            await_join: start.await_join,
            probe,
            waiter,
            remaining: probe.then_some(1),
        };
        feed.broadcast
            .add_receiver(feed.stats_key(), feed.stats.clone());
        feed
    }

    /// The writer closes a receiver that lags: reported once.
    fn kicked(&mut self, lagged: Lagged) -> Lagged {
        if self.stats.mark_kicked() {
            self.broadcast.kicked(&self.stats, lagged.behind_bytes);
        }
        lagged
    }

    /// Its skip from `cursor` (reported), or the lag that closes it.
    fn plan_skip(&mut self, cursor: u64, lagged: Lagged) -> Result<Skip, Lagged> {
        // A `play` body is written by hyper in whole frames and polled only once its
        // socket drains, so a skip could not be handed out in time: it is cut.
        let mode = match self.stats.kind {
            Kind::Play => super::LaggingReceivers::Close,
            _ => self.broadcast.lagging(),
        };
        let now = tokio::time::Instant::now();
        let skip = {
            let log = self.broadcast.log();
            overload::decide(&log, mode, &mut self.skips, cursor, lagged, now)?
        };
        self.broadcast
            .skipped(&self.stats, lagged.behind_bytes, skip.skipped_bytes);
        Ok(skip)
    }

    /// Hands out a skip: the rest of its group, media from the join point, then on from there.
    fn apply_skip(&mut self, skip: Skip, out: &mut Vec<Bytes>) -> FeedEvent {
        let before = out.len();
        out.extend(skip.tail);
        out.push(skip.media);
        self.cursor = skip.cursor;
        let position = self.broadcast.log().acc_of(self.cursor);
        self.moved(position);
        self.stats
            .handed(sum(&out[before..]), Some(self.cursor), false);
        FeedEvent::Data
    }

    /// Its cursor moved to accounted offset `position`.
    fn moved(&self, position: u64) {
        let before = self.stats.move_to(position);
        let gate = self.broadcast.ingest();
        if gate.head().saturating_sub(position) <= gate.lead() {
            self.stats.caught_up();
        }
        gate.advanced(before, position);
    }

    /// Unique while the feed lives.
    fn stats_key(&self) -> u64 {
        Arc::as_ptr(&self.stats) as usize as u64
    }

    /// Waits for the next chunks and appends them to `out` (cancel-safe).
    pub(crate) async fn next_batch(&mut self, out: &mut Vec<Bytes>) -> FeedEvent {
        std::future::poll_fn(|cx| self.poll_batch(cx, out)).await
    }

    /// [`Feed::next_batch`] as a poll function, for a writer that is itself polled
    /// (the HTTP body of `play`).
    pub(crate) fn poll_batch(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Vec<Bytes>,
    ) -> Poll<FeedEvent> {
        loop {
            if self.remaining == Some(0) {
                return Poll::Ready(FeedEvent::End);
            }
            let max = self.remaining.unwrap_or(MAX_BATCH_CHUNKS);
            if !self.replay.is_empty() {
                let n = self.replay.len().min(max);
                let before = out.len();
                out.extend(self.replay.drain(..n));
                self.stats.handed(sum(&out[before..]), None, true);
                self.consumed(n);
                return Poll::Ready(FeedEvent::Data);
            }
            self.waiter.mark_seen(self.broadcast.wakers());
            let ended = self.broadcast.is_ended();
            if self.await_join.is_some() {
                let before = out.len();
                if self.skip_to_join(out) {
                    let bytes = sum(&out[before..]);
                    self.stats.handed(bytes, Some(self.cursor), false);
                    return Poll::Ready(FeedEvent::Data);
                }
                if ended {
                    return Poll::Ready(self.end());
                }
                ready!(self.waiter.poll_changed(self.broadcast.wakers(), cx));
                continue;
            }
            if let Some(skip) = self.pending.take().map(|s| *s) {
                return Poll::Ready(self.apply_skip(skip, out));
            }
            let before = out.len();
            let read = {
                let log = self.broadcast.log();
                log.read(self.cursor, max, MAX_BATCH_BYTES, out)
                    .map(|cursor| (cursor, log.acc_of(cursor)))
            };
            match read {
                Err(lagged) => {
                    return Poll::Ready(match self.plan_skip(self.cursor, lagged) {
                        Ok(skip) => self.apply_skip(skip, out),
                        Err(lagged) => FeedEvent::Lagged(self.kicked(lagged)),
                    });
                }
                Ok((cursor, position)) => {
                    self.cursor = cursor;
                    self.moved(position);
                }
            }
            if out.len() > before {
                let bytes = sum(&out[before..]);
                self.stats.handed(bytes, Some(self.cursor), false);
                self.consumed(out.len() - before);
                return Poll::Ready(FeedEvent::Data);
            }
            if ended {
                return Poll::Ready(self.end());
            }
            ready!(self.waiter.poll_changed(self.broadcast.wakers(), cx));
        }
    }

    /// Whether the scanner has decided the stream's container.
    pub(crate) fn container_known(&self) -> bool {
        self.broadcast.stats().container_known()
    }

    /// The stream's container as the scanner sees it: `webm`, `mp4` or `opaque`.
    pub(crate) fn container(&self) -> &'static str {
        self.broadcast.stats().container()
    }

    /// A handle that tells, from another task, whether this feed has fallen out
    /// of the lag window (its writer may be stuck in a write and not polling).
    pub(crate) fn lag_watch(&self) -> LagWatch {
        LagWatch {
            broadcast: self.broadcast.clone(),
            stats: self.stats.clone(),
        }
    }

    /// Resolves when this receiver, being written to, has fallen out of the lag window
    /// and is to be closed (cancel-safe). A receiver that may skip instead gets its skip
    /// ready for the next batch. When that skip falls out too before its writer is done
    /// (the kernel's send buffer can hold seconds of a slow reader's stream), it moves to
    /// the newest join point; one not handed out within [`overload::HAND_OUT_WITHIN`]
    /// closes the receiver.
    pub(crate) async fn lagged(&mut self) -> Lagged {
        loop {
            let cursor = self.pending.as_ref().map_or(self.cursor, |s| s.cursor);
            let lag = self.broadcast.log().check_lag(cursor);
            if let Err(lagged) = lag {
                if let Some(skip) = self.pending.as_mut() {
                    let fresh = self
                        .pending_since
                        .is_some_and(|t| t.elapsed() < overload::HAND_OUT_WITHIN);
                    let before = skip.skipped_bytes;
                    if fresh && self.broadcast.log().retarget(skip).is_ok() {
                        self.broadcast.skipped_more(skip.skipped_bytes - before);
                        continue;
                    }
                    return self.kicked(lagged.because("its skip was not taken in time"));
                }
                match self.plan_skip(cursor, lagged) {
                    Ok(skip) => {
                        self.pending = Some(Box::new(skip));
                        self.pending_since = Some(tokio::time::Instant::now());
                        continue;
                    }
                    Err(lagged) => return self.kicked(lagged),
                }
            }
            self.waiter.changed(self.broadcast.wakers()).await;
        }
    }

    /// Moves past chunks without a join point; true once the init and a join point's media are out.
    fn skip_to_join(&mut self, out: &mut Vec<Bytes>) -> bool {
        let (cursor, media, position) = {
            let log = self.broadcast.log();
            let (cursor, media) = log.next_join(self.cursor);
            (cursor, media, log.acc_of(cursor))
        };
        self.cursor = cursor;
        self.moved(position);
        let (Some(media), Some(init)) = (media, self.await_join.take()) else {
            return false;
        };
        if self.probe {
            let mut message = bytes::BytesMut::with_capacity(init.len() + media.len());
            message.extend_from_slice(&init);
            message.extend_from_slice(&media);
            out.push(message.freeze());
        } else {
            out.push(init);
            out.push(media);
        }
        self.consumed(1);
        true
    }

    fn end(&self) -> FeedEvent {
        if self.broadcast.is_lost() {
            FeedEvent::Lost
        } else {
            FeedEvent::End
        }
    }

    fn consumed(&mut self, n: usize) {
        if let Some(left) = self.remaining.as_mut() {
            *left = left.saturating_sub(n);
        }
    }
}

/// Watches one feed's lag from outside its writer (see [`Feed::lag_watch`]).
#[derive(Debug)]
pub(crate) struct LagWatch {
    broadcast: Arc<Broadcast>,
    stats: Arc<ReceiverStats>,
}

impl LagWatch {
    /// `Some` once the feed's cursor is out of the lag window (reported once, as the feed does).
    pub(crate) fn check(&self) -> Option<Lagged> {
        let lagged = self.broadcast.log().check_lag(self.stats.cursor()).err()?;
        if self.stats.mark_kicked() {
            self.broadcast.kicked(&self.stats, lagged.behind_bytes);
        }
        Some(lagged)
    }
}
