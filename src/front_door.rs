//! The HTTP front door (docs/PROTOCOL.md §2.1–2.2): path → route, the checks before the
//! upgrade, and the one place that turns a refusal into a status and body.
//! Pure functions over the request parts.

use http::header::{HeaderMap, HeaderValue, CONNECTION, UPGRADE};
use http::{Method, StatusCode, Version};

use crate::http::Answer;
use crate::hub::Kind;

/// Where a request path leads. Only the path counts; it is not percent-decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    /// `/`
    Root,
    /// Exactly three segments: `/{channel}/{key}/{kind}` (segments may be empty).
    Stream {
        channel: &'a str,
        key: &'a str,
        kind: &'a str,
    },
    /// Anything else.
    Other(&'a str),
}

pub(crate) fn route(path: &str) -> Route<'_> {
    if path == "/" {
        return Route::Root;
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Route::Other(path);
    };
    let mut parts = rest.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(channel), Some(key), Some(kind), None) => Route::Stream { channel, key, kind },
        _ => Route::Other(path),
    }
}

/// 1..=`max_len` characters of `A-Z a-z 0-9 _ -`.
pub(crate) fn valid_id(id: &str, max_len: usize) -> bool {
    !id.is_empty()
        && id.len() <= max_len
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Why a request is answered without an upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("too many concurrent connections from this address")]
    TooManyRequests,
    #[error("invalid channel")]
    InvalidChannel,
    #[error("invalid key")]
    InvalidKey,
    #[error("invalid connection kind")]
    InvalidKind,
    #[error("channel already has a publisher")]
    AlreadyPublishing,
    #[error("publish not authorised")]
    PublishDenied,
    #[error("address not in the play whitelist")]
    NotWhitelisted,
    #[error("upgrade request with a method other than GET")]
    MethodNotAllowed,
    #[error("not a valid websocket upgrade")]
    BadRequest,
    #[error("no such page")]
    NotFound,
    #[error("no publisher within the play wait")]
    NotPublishing,
    #[error("stream key does not match the publisher's")]
    InvalidStreamingKey,
}

impl Refusal {
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Self::InvalidChannel
            | Self::InvalidKey
            | Self::InvalidKind
            | Self::NotFound
            | Self::NotPublishing => StatusCode::NOT_FOUND,
            Self::AlreadyPublishing
            | Self::PublishDenied
            | Self::NotWhitelisted
            | Self::InvalidStreamingKey => StatusCode::FORBIDDEN,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::BadRequest => StatusCode::BAD_REQUEST,
        }
    }

    /// The exact body text the original sends.
    pub(crate) fn body(self) -> &'static str {
        match self {
            Self::TooManyRequests => "Too many requests.",
            Self::InvalidChannel => "Invalid channel.",
            Self::InvalidKey => "Invalid key.",
            Self::InvalidKind => "Invalid connection kind.",
            Self::AlreadyPublishing => "Already publishing.",
            Self::PublishDenied => "Invalid Key.",
            Self::NotWhitelisted => "Cannot play: Not whitelisted.",
            Self::MethodNotAllowed => "Method Not Allowed\n",
            Self::BadRequest => "Bad Request\n",
            Self::NotFound => "Not found.",
            Self::NotPublishing => "Not publishing.",
            Self::InvalidStreamingKey => "Invalid streaming key.",
        }
    }

    /// Short snake_case reason, for the refusal metric's label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::TooManyRequests => "too_many_requests",
            Self::InvalidChannel => "invalid_channel",
            Self::InvalidKey => "invalid_key",
            Self::InvalidKind => "invalid_kind",
            Self::AlreadyPublishing => "already_publishing",
            Self::PublishDenied => "publish_denied",
            Self::NotWhitelisted => "not_whitelisted",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::BadRequest => "bad_request",
            Self::NotFound => "not_found",
            Self::NotPublishing => "not_publishing",
            Self::InvalidStreamingKey => "invalid_streaming_key",
        }
    }

    pub(crate) fn response(self) -> Answer {
        let mut response = crate::http::text(self.status(), self.body());
        if matches!(self, Self::MethodNotAllowed | Self::BadRequest) {
            response
                .headers_mut()
                .insert("Sec-WebSocket-Version", HeaderValue::from_static("13"));
        }
        response
    }
}

/// Channel, key and kind checks, in the order of docs/PROTOCOL.md §2.2.
pub(crate) fn validate(
    channel: &str,
    key: &str,
    kind: &str,
    max_len: usize,
) -> Result<Kind, Refusal> {
    if !valid_id(channel, max_len) {
        return Err(Refusal::InvalidChannel);
    }
    if !valid_id(key, max_len) {
        return Err(Refusal::InvalidKey);
    }
    Kind::parse(kind).ok_or(Refusal::InvalidKind)
}

/// The WebSocket handshake checks, in the original's order (gorilla/websocket),
/// plus two it lacks: the request is HTTP/1.1 (an HTTP/1.0 client cannot
/// upgrade) and `Sec-WebSocket-Key` is base64 of 16 bytes (RFC 6455 §4.2.1).
pub(crate) fn check_upgrade(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> Result<(), Refusal> {
    if !header_has_token(headers, CONNECTION, "upgrade")
        || !header_has_token(headers, UPGRADE, "websocket")
    {
        return Err(Refusal::BadRequest);
    }
    if method != Method::GET {
        return Err(Refusal::MethodNotAllowed);
    }
    if version != Version::HTTP_11 {
        return Err(Refusal::BadRequest);
    }
    if !headers
        .get_all("Sec-WebSocket-Version")
        .iter()
        .any(|v| v.as_bytes() == b"13")
    {
        return Err(Refusal::BadRequest);
    }
    let key_valid = headers
        .get("Sec-WebSocket-Key")
        .is_some_and(|v| valid_key(v.as_bytes().trim_ascii()));
    if !key_valid {
        return Err(Refusal::BadRequest);
    }
    Ok(())
}

/// A `Sec-WebSocket-Key`: canonical base64 (padded, no stray bits) of exactly 16 bytes.
fn valid_key(key: &[u8]) -> bool {
    use base64::Engine as _;
    // 16 bytes encode to 24 characters; checking first keeps the decode bounded.
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|bytes| bytes.len() == 16)
}

fn header_has_token(headers: &HeaderMap, name: http::header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

#[cfg(test)]
mod tests;
