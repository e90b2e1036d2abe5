//! One upstream connection: a `receive` on one origin, kept alive with pings,
//! read under the idle timeout and the message-size bound.

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::{interval_at, sleep_until, timeout, Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::UpstreamLimits;
use crate::metrics::{Metrics, Open};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The text an origin sends before closing a receiver whose key it refuses.
const INVALID_KEY_TEXT: &str = "ERROR: Invalid streaming key";

/// Longest time for the TCP connect, TLS and WebSocket handshakes together.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long our close frame may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why an attempt on an origin failed before its first chunk.
#[derive(Debug, thiserror::Error)]
pub(super) enum AttemptError {
    #[error("cannot connect: {0}")]
    Connect(tungstenite::Error),
    #[error("no connection within {}s", DIAL_TIMEOUT.as_secs())]
    Timeout,
    #[error("refused with HTTP {0}")]
    Refused(u16),
    #[error("{0}")]
    Ended(Ended),
}

impl AttemptError {
    /// The `reason` label of `edge_upstream_failures`.
    pub(super) fn label(&self) -> &'static str {
        match self {
            Self::Connect(_) | Self::Timeout => "connect",
            Self::Refused(_) => "refused",
            Self::Ended(Ended::Idle) => "idle",
            Self::Ended(_) => "closed",
        }
    }
}

/// How an upstream connection ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum Ended {
    /// The origin closed with this code (`None`: a close frame without one).
    #[error("closed by the origin with code {0:?}")]
    Closed(Option<u16>),
    #[error("connection lost: {0}")]
    Failed(String),
    #[error("nothing received for the idle timeout")]
    Idle,
}

/// What the origin said that matters to the pull.
#[derive(Debug)]
pub(super) enum Incoming {
    Chunk(Bytes),
    /// `ERROR: Invalid streaming key`: the origin's verdict on the key.
    InvalidKey,
    End(Ended),
}

/// A connected upstream (its state counted in `edge_upstreams`).
pub(super) struct Upstream {
    sink: SplitSink<Ws, Message>,
    stream: SplitStream<Ws>,
    beat: Interval,
    idle: Duration,
    last: Instant,
    state: Open,
    metrics: std::sync::Arc<Metrics>,
}

impl Upstream {
    /// Dials `url` (counted as `connecting` meanwhile); the upstream is then `waiting`.
    pub(super) async fn dial(
        url: &str,
        limits: UpstreamLimits,
        metrics: std::sync::Arc<Metrics>,
    ) -> Result<Self, AttemptError> {
        let connecting = Open::upstream(&metrics, "connecting");
        let max = limits.max_message_bytes;
        let config = WebSocketConfig::default()
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        let connect = tokio_tungstenite::connect_async_with_config(url, Some(config), true);
        let ws = match timeout(DIAL_TIMEOUT, connect).await {
            Err(_) => return Err(AttemptError::Timeout),
            Ok(Err(tungstenite::Error::Http(response))) => {
                return Err(AttemptError::Refused(response.status().as_u16()))
            }
            Ok(Err(e)) => return Err(AttemptError::Connect(e)),
            Ok(Ok((ws, _response))) => ws,
        };
        drop(connecting);
        let (sink, stream) = ws.split();
        let heartbeat = limits.heartbeat;
        let mut beat = interval_at(Instant::now() + heartbeat, heartbeat);
        beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Ok(Self {
            sink,
            stream,
            beat,
            idle: limits.idle_timeout,
            last: Instant::now(),
            state: Open::upstream(&metrics, "waiting"),
            metrics,
        })
    }

    /// Counts this upstream as `streaming` from now on.
    pub(super) fn streaming(&mut self) {
        self.state = Open::upstream(&self.metrics, "streaming");
    }

    /// The next message that matters; pings the origin meanwhile (cancel-safe).
    pub(super) async fn next(&mut self) -> Incoming {
        loop {
            // The beat first: an origin that streams without pause must still hear
            // from us, or its idle timeout would close this receiver.
            tokio::select! {
                biased;
                _ = self.beat.tick() => {
                    let ping = self.sink.send(Message::Ping(Bytes::new()));
                    match timeout(self.idle, ping).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Incoming::End(Ended::Failed(e.to_string())),
                        Err(_) => return Incoming::End(Ended::Failed("ping not taken".to_owned())),
                    }
                }
                message = self.stream.next() => {
                    if let Some(incoming) = self.take(message) {
                        return incoming;
                    }
                }
                () = sleep_until(self.last + self.idle) => return Incoming::End(Ended::Idle),
            }
        }
    }

    /// The next message if one is already here.
    pub(super) fn try_next(&mut self) -> Option<Incoming> {
        loop {
            let message = self.stream.next().now_or_never()?;
            if let Some(incoming) = self.take(message) {
                return Some(incoming);
            }
        }
    }

    /// `None` for what only shows the origin is alive (heartbeats, pings, pongs).
    fn take(&mut self, message: Option<Result<Message, tungstenite::Error>>) -> Option<Incoming> {
        self.last = Instant::now();
        match message {
            Some(Ok(Message::Binary(chunk))) => Some(Incoming::Chunk(chunk)),
            Some(Ok(Message::Text(text))) if text.as_str() == INVALID_KEY_TEXT => {
                Some(Incoming::InvalidKey)
            }
            Some(Ok(Message::Close(frame))) => Some(Incoming::End(Ended::Closed(
                frame.map(|f| u16::from(f.code)),
            ))),
            Some(Ok(_)) => None,
            Some(Err(e)) => Some(Incoming::End(Ended::Failed(e.to_string()))),
            None => Some(Incoming::End(Ended::Failed(
                "connection ended without a close frame".to_owned(),
            ))),
        }
    }

    /// Ends the connection with a 1000 close (bounded; a dead origin is just dropped).
    pub(super) async fn close(mut self) {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let _ = timeout(CLOSE_TIMEOUT, self.sink.send(Message::Close(Some(frame)))).await;
    }
}

/// Dials `url` and waits for the origin's first chunk or its verdict on the key.
pub(super) async fn attempt(
    url: String,
    limits: UpstreamLimits,
    metrics: std::sync::Arc<Metrics>,
) -> Result<(Upstream, Option<Bytes>), AttemptError> {
    let mut upstream = Upstream::dial(&url, limits, metrics).await?;
    match upstream.next().await {
        Incoming::Chunk(chunk) => Ok((upstream, Some(chunk))),
        Incoming::InvalidKey => Ok((upstream, None)),
        Incoming::End(ended) => Err(AttemptError::Ended(ended)),
    }
}
