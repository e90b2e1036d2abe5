//! The control link's I/O: dial with the docs/PROTOCOL.md §3 headers, exchange messages and
//! heartbeats, notice silence, and re-dial (at once after a lost link, after
//! `CONTROL_RETRY_SECONDS` after a failed dial), until shutdown.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{interval_at, sleep_until, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use super::codec::{self, method, ControlMessage};
use super::{jwt, redacted, Control};
use crate::config::{mask_str, ControlSettings};

/// Time allowed for TCP, TLS and the WebSocket handshake of one dial.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest message accepted from the coordinator.
const MAX_CONTROL_MESSAGE: usize = 64 * 1024;
/// Messages waiting to be written to the coordinator.
const OUTGOING_BACKLOG: usize = 1024;

type Link = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub(super) async fn run(control: Control, shutdown: CancellationToken) {
    loop {
        let dialled = tokio::select! {
            () = shutdown.cancelled() => return,
            dialled = dial(&control) => dialled,
        };
        match dialled {
            Ok(link) => {
                control.dialled("connected");
                tracing::info!(url = %mask_str(&control.inner.settings.url), "connected to the coordinator");
                let reason = serve(&control, link, &shutdown).await;
                control.link_down();
                tracing::warn!(reason, "control link down; dialling again");
            }
            Err(DialError::Config(e)) => {
                // Checked at start-up, so only a changed environment gets here.
                control.link_down();
                tracing::error!(error = %e, "the control link cannot be set up: fix the configuration; publishers are denied");
                return;
            }
            Err(e) => {
                control.link_down();
                control.dialled("failed");
                let retry = control.inner.settings.retry_delay;
                tracing::warn!(url = %mask_str(&control.inner.settings.url), error = %e, retry_seconds = retry.as_secs(), "cannot connect to the coordinator");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(retry) => {}
                }
            }
        }
    }
}

/// Why a dial failed.
#[derive(Debug, thiserror::Error)]
enum DialError {
    /// The request cannot be built from the settings: dialling again cannot help.
    #[error(transparent)]
    Config(#[from] RequestError),
    #[error(transparent)]
    Connect(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("dial timed out")]
    Timeout,
}

/// A setting that cannot go into the dial request (a configuration fault).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    #[error("invalid coordinator URL: {0}")]
    Url(tokio_tungstenite::tungstenite::Error),
    #[error("cannot sign the control token: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    #[error("{0} cannot be sent as an HTTP header value")]
    Header(&'static str),
}

/// The upgrade request of one dial: the URL and the control headers.
pub(crate) fn request(settings: &ControlSettings) -> Result<Request, RequestError> {
    let mut request = settings
        .url
        .as_str()
        .into_client_request()
        .map_err(RequestError::Url)?;
    let headers = request.headers_mut();
    let value = |name: &'static str, v: &str| {
        HeaderValue::from_str(v).map_err(|_| RequestError::Header(name))
    };
    if !settings.secret.is_empty() {
        let token = jwt::token(&settings.secret)?;
        headers.insert("x-control-auth-token", value("the JWT", &token)?);
    }
    if let Some(ip) = &settings.external_ip {
        headers.insert("x-external-ip", value("EXTERNAL_IP", ip)?);
    }
    if let Some(port) = &settings.external_port {
        headers.insert("x-custom-port", value("EXTERNAL_PORT", port)?);
    }
    if settings.external_ssl {
        headers.insert("x-ssl-use", HeaderValue::from_static("true"));
    }
    Ok(request)
}

async fn dial(control: &Control) -> Result<Link, DialError> {
    let request = request(&control.inner.settings)?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_CONTROL_MESSAGE))
        .max_frame_size(Some(MAX_CONTROL_MESSAGE));
    let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), false);
    let (link, _response) = tokio::time::timeout(DIAL_TIMEOUT, connect)
        .await
        .map_err(|_| DialError::Timeout)??;
    Ok(link)
}

/// Runs one established link until it fails; returns why.
async fn serve(control: &Control, link: Link, shutdown: &CancellationToken) -> &'static str {
    let (mut sink, mut stream) = link.split();
    let (tx, mut rx) = mpsc::channel::<ControlMessage>(OUTGOING_BACKLOG);
    control.link_up(tx);
    let beat = control.inner.heartbeat;
    let mut heartbeat = interval_at(Instant::now() + beat, beat);
    let mut last_seen = Instant::now();
    loop {
        let outgoing = tokio::select! {
            () = shutdown.cancelled() => {
                // Last words first: the PUBLISH-END of publishers closed by the shutdown.
                while let Ok(msg) = rx.try_recv() {
                    tracing::debug!(message = %redacted(&msg), "control message out");
                    let _ = sink.feed(Message::Text(codec::serialize(&msg).into())).await;
                }
                let _ = sink.close().await;
                return "server shutting down";
            }
            () = sleep_until(last_seen + control.inner.silence) => return "nothing received for too long",
            incoming = stream.next() => {
                last_seen = Instant::now();
                match incoming {
                    Some(Ok(Message::Text(text))) => {
                        let msg = codec::parse(text.as_str());
                        tracing::debug!(message = %redacted(&msg), "control message in");
                        control.handle(&msg);
                        None
                    }
                    Some(Ok(Message::Binary(b))) => {
                        tracing::warn!(bytes = b.len(), "binary message from the coordinator ignored");
                        None
                    }
                    Some(Ok(Message::Close(_))) | None => return "closed by the coordinator",
                    Some(Ok(_)) => None,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "control link read error");
                        return "read error";
                    }
                }
            }
            Some(msg) = rx.recv() => Some(msg),
            _ = heartbeat.tick() => Some(ControlMessage::new(method::HEARTBEAT)),
        };
        if let Some(msg) = outgoing {
            tracing::debug!(message = %redacted(&msg), "control message out");
            let send = sink.send(Message::Text(codec::serialize(&msg).into()));
            match tokio::time::timeout(control.inner.silence, send).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return "write error",
                Err(_) => return "the coordinator stopped reading",
            }
        }
    }
}
