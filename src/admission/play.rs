//! Admission of `GET|HEAD /{channel}/{key}/play` (docs/PROTOCOL.md §2.10): the live stream as
//! one chunked HTTP body, for players without our WebSocket protocol.
//!
//! Admission is the receivers' (per-IP slot, whitelist, callback, key), then the
//! request waits up to `PLAY_WAIT_SECONDS` for a publisher and its first batch.
//! The body reads the broadcast's chunk log through a [`Feed`], the cursor the
//! WebSocket writer uses, and hands hyper every chunk available at each poll as
//! one frame (`play::Batch`); hyper writes it with the chunk-size line around it in
//! vectored writes, chunks never copied. A reader out of the lag window
//! (`RECEIVER_QUEUE_MB`) is cut: by the body when polled, by the server's one
//! lag sweeper (`play_lag`) while hyper is stuck writing to it.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::time::{timeout_at, Instant};
use tokio_util::sync::CancellationToken;

use super::{callback, Admitted};
use crate::front_door::Refusal;
use crate::http::{Answer, Body, ConnCut};
use crate::hub::{Feed, FeedEvent, InvalidKey, Subscription, Who};
use crate::metrics::Open;
use crate::play::PlayBody;
use crate::play_lag::{self, Watched};
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
    let body = PlayBody::new(
        feed,
        first,
        drain.cancelled_owned(),
        kicked,
        watched,
        slot,
        info,
    );
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
fn content_type(container: &str) -> &'static str {
    match container {
        "webm" => "video/webm",
        "mp4" => "video/mp4",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_follow_the_container() {
        assert_eq!(content_type("webm"), "video/webm");
        assert_eq!(content_type("mp4"), "video/mp4");
        assert_eq!(content_type("opaque"), "application/octet-stream");
    }
}
