//! `GET|HEAD /{channel}/{key}/play` (docs/PROTOCOL.md §2.7): the live stream as
//! one chunked HTTP body, for players without our WebSocket protocol.
//!
//! Admission is the receivers' (per-IP slot, whitelist, callback, key), then the
//! request waits up to `PLAY_WAIT_SECONDS` for a publisher and its first batch.
//! The body reads the broadcast's chunk log through a [`Feed`], the cursor the
//! WebSocket writer uses, and hands hyper every chunk available at each poll as
//! one frame ([`Batch`]); hyper writes it with the chunk-size line around it in
//! vectored writes, chunks never copied. A reader out of the lag window
//! (`RECEIVER_QUEUE_MB`) is cut: by the body when polled, by the server's one
//! lag sweeper (`play_lag`) while hyper is stuck writing to it.

use std::collections::VecDeque;
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::header::{HeaderValue, ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::{Frame, Incoming};
use tokio::time::{timeout_at, Instant};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::access::IpSlot;
use crate::admission::{callback, Admitted};
use crate::front_door::Refusal;
use crate::http::{Answer, Body, ConnCut};
use crate::hub::{Feed, FeedEvent, InvalidKey, Subscription, Who};
use crate::metrics::Open;
use crate::play_lag::{self, kick, Watched};
use crate::session::SessionInfo;

/// Answers a `play` request that passed the common checks.
pub(crate) async fn play(req: &Request<Incoming>, a: Admitted<'_>) -> Result<Answer, Refusal> {
    let Admitted {
        shared,
        info,
        key,
        slot,
    } = a;
    let head_only = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => return Err(Refusal::MethodNotAllowed),
    };
    if !shared.config.play_whitelist.contains(info.tag.ip) {
        return Err(Refusal::NotWhitelisted);
    }
    callback(shared, &info, key).await?;
    let who = Who {
        id: info.tag.id,
        ip: info.tag.ip,
    };
    let (subscription, pull) = shared
        .hub
        .subscribe_or_pull(&info.channel, key, info.kind, who);
    if let (Some(claim), Some(edge)) = (pull, &shared.edge) {
        edge.start(claim, info.channel.clone(), key.to_owned());
    }
    let wait = shared.config.play_wait;
    let drain = shared.drain.signal.clone();
    let (feed, first) = tokio::select! {
        started = start(subscription, wait, &info) => started?,
        () = drain.cancelled() => return Err(Refusal::NotPublishing),
    };
    let content_type = content_type(feed.container());
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    let (channel, tag) = (info.channel.as_str(), info.tag);
    if head_only {
        tracing::info!(target: "request", channel, content_type, "{tag} play head");
        return Ok(response);
    }
    tracing::info!(target: "request", channel, content_type, "{tag} play start");
    info.metrics.receivers_started.inc();
    let cut = req
        .extensions()
        .get::<ConnCut>()
        .map_or_else(CancellationToken::new, |c| c.0.clone());
    let kicked = Arc::new(AtomicBool::new(false));
    let watched = Arc::new(Watched {
        watch: feed.lag_watch(),
        cut,
        kicked: kicked.clone(),
        info: info.clone(),
    });
    if shared.play_lag.add(&watched) {
        let sweeper = Arc::downgrade(&shared.play_lag);
        shared
            .drain
            .spawn(play_lag::sweep(sweeper, shared.drain.signal.clone()));
    }
    let body = PlayBody {
        ended: false,
        first: Some(first),
        batch: Vec::new(),
        shutdown: Box::pin(drain.cancelled_owned()),
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
    };
    *response.body_mut() = Body::Play(Box::new(body));
    Ok(response)
}

/// Waits (bounded) for a publisher, then, if the container is not known yet, for
/// the reader's first batch (sent first).
async fn start(
    subscription: Subscription,
    wait: Duration,
    info: &SessionInfo,
) -> Result<(Feed, Vec<Bytes>), Refusal> {
    let mut feed = match subscription {
        Subscription::Ready(Ok(feed)) => feed,
        Subscription::Ready(Err(InvalidKey)) => return Err(invalid_key(info)),
        Subscription::Waiting(mut ticket) => {
            tracing::info!(target: "request", channel = %info.channel, kind = info.kind.as_str(), "{} play idle", info.tag);
            let _waiting = Open::receiver(&info.metrics, "waiting");
            match timeout_at(Instant::now() + wait, ticket.started()).await {
                Ok(Ok(feed)) => feed,
                Ok(Err(InvalidKey)) => return Err(invalid_key(info)),
                Err(_) => return Err(not_publishing(info)),
            }
        }
    };
    // The content type comes from the scanner, which decides on the first bytes:
    // before it has, the reader waits (bounded) for its first batch.
    let mut first = Vec::new();
    if feed.container_known() {
        return Ok((feed, first));
    }
    match timeout_at(Instant::now() + wait, feed.next_batch(&mut first)).await {
        Ok(FeedEvent::Data) => Ok((feed, first)),
        Ok(FeedEvent::End | FeedEvent::Lost | FeedEvent::Lagged(_)) | Err(_) => {
            Err(not_publishing(info))
        }
    }
}

fn invalid_key(info: &SessionInfo) -> Refusal {
    tracing::info!(target: "request", channel = %info.channel, "{} invalid streaming key", info.tag);
    Refusal::InvalidStreamingKey
}

fn not_publishing(info: &SessionInfo) -> Refusal {
    tracing::info!(target: "request", channel = %info.channel, "{} play: no publisher", info.tag);
    Refusal::NotPublishing
}

/// The `Content-Type` of a stream, from the scanner's container.
pub(crate) fn content_type(container: &str) -> &'static str {
    match container {
        "webm" => "video/webm",
        "mp4" => "video/mp4",
        _ => "application/octet-stream",
    }
}

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

    #[test]
    fn content_types_follow_the_container() {
        assert_eq!(content_type("webm"), "video/webm");
        assert_eq!(content_type("mp4"), "video/mp4");
        assert_eq!(content_type("opaque"), "application/octet-stream");
    }
}
