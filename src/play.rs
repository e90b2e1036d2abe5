//! The body of a `play` answer (docs/PROTOCOL.md §2.10): the reader's [`Feed`]
//! on the broadcast's chunk log, the cursor the WebSocket writer uses, handed to
//! hyper as one frame per poll ([`Batch`]: every available chunk its own
//! `IoSlice`, never copied; hyper writes them vectored with one chunk-size line
//! per batch). A reader out of the lag window is cut: by the body when polled,
//! by the lag sweeper (`play_lag`) while hyper is stuck writing to it.

use std::collections::VecDeque;
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use hyper::body::Frame;
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::access::IpSlot;
use crate::hub::{Feed, FeedEvent};
use crate::metrics::Open;
use crate::play_lag::{kick, Watched};
use crate::session::SessionInfo;

// === impl PlayBody ===

/// The body of a `play` answer: the reader's feed, batch by batch.
#[derive(Debug)]
pub(crate) struct PlayBody {
    feed: Feed,
    /// The batch read before the head was sent.
    first: Option<Vec<Bytes>>,
    batch: Vec<Bytes>,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    kicked: Arc<AtomicBool>,
    ended: bool,
    end: End,
}

/// What a reader holds while it plays; its end is logged when dropped.
#[derive(Debug)]
struct End {
    _open: Open,
    _playing: Open,
    _slot: IpSlot,
    /// Registered with the sweeper while this lives (it holds a `Weak`).
    _watched: Arc<Watched>,
    reason: &'static str,
    info: SessionInfo,
}

impl Drop for End {
    fn drop(&mut self) {
        let info = &self.info;
        tracing::info!(target: "request", channel = %info.channel, kind = info.kind.as_str(), reason = self.reason, "{} play end", info.tag);
    }
}

/// A lagging reader's body ends with this error: hyper drops the connection
/// without the last chunk, so the player sees a truncated stream.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Cut {
    #[error("reader cut: {behind_bytes} bytes behind the live head")]
    Lagging { behind_bytes: u64 },
    /// An edge lost the origin its channel was pulled from.
    #[error("origin lost")]
    OriginLost,
}

impl PlayBody {
    /// The body of a reader admitted by `admission::play`: `first` goes out first.
    pub(crate) fn new(
        feed: Feed,
        first: Vec<Bytes>,
        shutdown: WaitForCancellationFutureOwned,
        kicked: Arc<AtomicBool>,
        watched: Arc<Watched>,
        slot: IpSlot,
        info: SessionInfo,
    ) -> Self {
        Self {
            ended: false,
            first: Some(first),
            batch: Vec::new(),
            shutdown: Box::pin(shutdown),
            end: End {
                _open: Open::connection(&info.metrics, info.kind.as_str()),
                _playing: Open::receiver(&info.metrics, "playing"),
                _slot: slot,
                _watched: watched,
                reason: "client closed",
                info,
            },
            kicked,
            feed,
        }
    }

    fn data(&mut self, chunks: Vec<Bytes>) -> Frame<Batch> {
        let metrics = &self.end.info.metrics;
        metrics.chunks_out.inc_by(chunks.len() as u64);
        let batch = Batch::new(chunks);
        metrics.bytes_out.inc_by(batch.remaining() as u64);
        Frame::data(batch)
    }

    fn finish(&mut self, reason: &'static str) -> Poll<Option<Result<Frame<Batch>, Cut>>> {
        self.ended = true;
        self.end.reason = reason;
        Poll::Ready(None)
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        self.ended
    }

    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Batch>, Cut>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Some(first) = self.first.take().filter(|f| !f.is_empty()) {
            return Poll::Ready(Some(Ok(self.data(first))));
        }
        if self.shutdown.as_mut().poll(cx).is_ready() {
            return self.finish("shutdown");
        }
        loop {
            let mut batch = std::mem::take(&mut self.batch);
            let event = self.feed.poll_batch(cx, &mut batch);
            match event {
                Poll::Pending => {
                    self.batch = batch;
                    return Poll::Pending;
                }
                Poll::Ready(FeedEvent::Data) if batch.iter().all(Bytes::is_empty) => {
                    batch.clear();
                    self.batch = batch;
                }
                Poll::Ready(FeedEvent::Data) => return Poll::Ready(Some(Ok(self.data(batch)))),
                Poll::Ready(FeedEvent::End) => return self.finish("end of stream"),
                Poll::Ready(FeedEvent::Lost) => {
                    self.ended = true;
                    self.end.reason = "origin lost";
                    return Poll::Ready(Some(Err(Cut::OriginLost)));
                }
                Poll::Ready(FeedEvent::Lagged(lagged)) => {
                    kick(&self.kicked, &self.end.info, lagged.behind_bytes);
                    self.ended = true;
                    self.end.reason = "lagging";
                    return Poll::Ready(Some(Err(Cut::Lagging {
                        behind_bytes: lagged.behind_bytes,
                    })));
                }
            }
        }
    }
}

// === impl Batch ===

/// Chunks handed to hyper as one body frame: one chunk-size line for all of
/// them, and every chunk its own slice of the vectored write.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    chunks: VecDeque<Bytes>,
    remaining: usize,
}

impl Batch {
    fn new(chunks: Vec<Bytes>) -> Self {
        let mut chunks = VecDeque::from(chunks);
        chunks.retain(|c| !c.is_empty());
        let remaining = chunks.iter().map(Bytes::len).sum();
        Self { chunks, remaining }
    }
}

impl From<Bytes> for Batch {
    fn from(bytes: Bytes) -> Self {
        Self::new(vec![bytes])
    }
}

impl Buf for Batch {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.chunks.front().map_or(&[], |c| &c[..])
    }

    fn advance(&mut self, mut cnt: usize) {
        self.remaining = self.remaining.saturating_sub(cnt);
        while cnt > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            if cnt < front.len() {
                front.advance(cnt);
                return;
            }
            cnt -= front.len();
            self.chunks.pop_front();
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, chunk) in dst.iter_mut().zip(&self.chunks) {
            *slot = IoSlice::new(chunk);
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_reads_back_its_chunks_in_order() {
        let chunks = vec![
            Bytes::from_static(b"abc"),
            Bytes::new(),
            Bytes::from_static(b"de"),
            Bytes::from_static(b"fghi"),
        ];
        let mut batch = Batch::new(chunks);
        assert_eq!(batch.remaining(), 9);
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(batch.chunks_vectored(&mut slices), 3);
        batch.advance(4);
        assert_eq!(batch.chunk(), b"e");
        let mut slices = [IoSlice::new(&[]); 1];
        assert_eq!(batch.chunks_vectored(&mut slices), 1);
        assert_eq!(&*slices[0], b"e");
        assert_eq!(batch.copy_to_bytes(batch.remaining()), &b"efghi"[..]);
        assert_eq!(batch.chunk(), b"");
    }
}
