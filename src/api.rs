//! The JSON API on the operator listener (`METRICS_ADDRESS`): what is live,
//! and the operator's kick.
//!
//! - `GET /api/channels`: every channel with an active publisher.
//! - `GET /api/channels/{channel}`: one (404 when it has no active publisher).
//! - `POST /api/channels/{channel}/kick`: closes its publisher as the
//!   coordinator's STREAM-KILL does (receivers get 1000); 204.
//!
//! With `API_TOKEN` every request needs `Authorization: Bearer TOKEN` (401
//! otherwise); without it the GETs are served and the POST is refused (403).
//! Keys never appear in an answer.

use crate::clock::rfc3339;
use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, AUTHORIZATION, WWW_AUTHENTICATE};
use http::{Method, Request, StatusCode};
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::http::{self as answer, Answer};
use crate::hub::{Broadcast, Kind};
use crate::state::Shared;

const JSON: &str = "application/json";

#[derive(Debug, Serialize)]
struct Channels {
    channels: Vec<ChannelView>,
}

#[derive(Debug, Serialize)]
struct ChannelView {
    channel: String,
    publisher: PublisherView,
    /// Receivers playing, by kind (every kind listed, 0 included).
    receiver_counts: BTreeMap<&'static str, usize>,
    receivers: Vec<ReceiverView>,
}

#[derive(Debug, Serialize)]
struct PublisherView {
    id: u64,
    ip: String,
    /// RFC 3339, UTC: when it started publishing.
    since: String,
    duration_seconds: f64,
    chunks: u64,
    bytes_in: u64,
    /// Bits per second over the last 10 s (or since it started, if younger).
    bitrate_bps: u64,
    /// `webm`, `mp4` or `opaque`.
    container: &'static str,
    /// 0 until the init segment is known (and for opaque streams).
    init_segment_bytes: u64,
    /// Held by its cache, 16 bytes of bookkeeping per chunk included.
    cache_bytes: u64,
}

#[derive(Debug, Serialize)]
struct ReceiverView {
    id: u64,
    kind: &'static str,
    ip: String,
    /// RFC 3339, UTC: when it started playing.
    since: String,
    /// Chunk bytes handed to its connection.
    bytes_out: u64,
    /// Queued for it: chunk bytes (+16 each) behind the live head, plus cache replay not yet sent.
    behind_bytes: u64,
}

#[derive(Debug, Serialize)]
struct ErrorView<'a> {
    error: &'a str,
}

/// Answers a request under `/api`.
pub(crate) fn serve<B>(req: &Request<B>, shared: &Arc<Shared>) -> Answer {
    let token = shared.config.operator.api_token.as_deref();
    if let Some(token) = token {
        if !authorized(req, token) {
            let mut a = error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
            a.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return a;
        }
    }
    let path = req.uri().path();
    let rest = path.strip_prefix("/api/channels");
    let method = req.method();
    match rest {
        Some("" | "/") => only_get(method).unwrap_or_else(|| list(shared, None)),
        Some(rest) => {
            let rest = rest.strip_prefix('/').unwrap_or(rest);
            match rest.split_once('/') {
                None => only_get(method).unwrap_or_else(|| list(shared, Some(rest))),
                Some((channel, "kick")) => {
                    if method != Method::POST {
                        return not_allowed("POST");
                    }
                    if token.is_none() {
                        return error(
                            StatusCode::FORBIDDEN,
                            "API_TOKEN is not set: POST requests are refused",
                        );
                    }
                    kick(shared, channel)
                }
                Some(_) => error(StatusCode::NOT_FOUND, "no such path"),
            }
        }
        None => error(StatusCode::NOT_FOUND, "no such path"),
    }
}

fn authorized<B>(req: &Request<B>, token: &str) -> bool {
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    // Constant time over the contents (the lengths may differ: ct_eq says no then).
    bool::from(given.as_bytes().ct_eq(token.as_bytes()))
}

fn only_get(method: &Method) -> Option<Answer> {
    (method != Method::GET && method != Method::HEAD).then(|| not_allowed("GET, HEAD"))
}

fn not_allowed(allow: &'static str) -> Answer {
    let mut a = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    a.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    a
}

fn list(shared: &Shared, only: Option<&str>) -> Answer {
    let channels: Vec<ChannelView> = shared
        .hub
        .broadcasts(only)
        .into_iter()
        .map(|(name, b)| view(name, &b))
        .collect();
    match only {
        None => json(StatusCode::OK, &Channels { channels }),
        Some(_) => match channels.into_iter().next() {
            Some(channel) => json(StatusCode::OK, &channel),
            None => error(StatusCode::NOT_FOUND, "no live channel of that name"),
        },
    }
}

fn kick(shared: &Shared, channel: &str) -> Answer {
    if shared.hub.kick(channel) {
        tracing::info!(target: "request", channel, "publisher kicked by the operator API");
        answer::with_body(StatusCode::NO_CONTENT, JSON, Bytes::new())
    } else {
        error(StatusCode::NOT_FOUND, "no publisher on that channel")
    }
}

fn view(channel: String, broadcast: &Broadcast) -> ChannelView {
    let stats = broadcast.stats();
    let publisher = PublisherView {
        id: stats.who.id,
        ip: stats.who.ip.to_string(),
        since: stats.since().map_or_else(String::new, rfc3339),
        duration_seconds: stats.duration().as_secs_f64(),
        chunks: stats.chunks(),
        bytes_in: stats.bytes(),
        bitrate_bps: stats.bitrate(),
        container: stats.container(),
        init_segment_bytes: stats.init_bytes(),
        cache_bytes: broadcast.cache_bytes(),
    };
    let mut receiver_counts: BTreeMap<&'static str, usize> = [
        Kind::Receive,
        Kind::ReceiveClearCache,
        Kind::Probe,
        Kind::Play,
    ]
    .into_iter()
    .map(|k| (k.as_str(), 0))
    .collect();
    let mut receivers: Vec<ReceiverView> = broadcast
        .receivers()
        .into_iter()
        .map(|r| {
            *receiver_counts.entry(r.kind.as_str()).or_default() += 1;
            ReceiverView {
                id: r.who.id,
                kind: r.kind.as_str(),
                ip: r.who.ip.to_string(),
                since: rfc3339(r.since),
                bytes_out: r.bytes_out(),
                behind_bytes: broadcast.behind(r.cursor()) + r.replay_left(),
            }
        })
        .collect();
    receivers.sort_by_key(|r| r.id);
    ChannelView {
        channel,
        publisher,
        receiver_counts,
        receivers,
    }
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Answer {
    match serde_json::to_vec(value) {
        Ok(body) => answer::with_body(status, JSON, body.into()),
        Err(_) => answer::text(StatusCode::INTERNAL_SERVER_ERROR, "serialisation failed\n"),
    }
}

fn error(status: StatusCode, message: &str) -> Answer {
    json(status, &ErrorView { error: message })
}
