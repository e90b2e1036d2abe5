//! The server's lifecycle: its shared state, the listeners' accept loops, and
//! the one drain that shutdown goes through.
//!
//! Every task (accept loops, connections, sessions, the TLS watcher) is spawned
//! on the [`Drain`]'s tracker and watches its signal. On shutdown the signal
//! fires, and `run` waits for the tracker until one grace deadline; the
//! coordinator link is stopped last so that the PUBLISH-END of the publishers
//! closed by the drain still reach the coordinator.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::control::Control;
use crate::front_door::{self, Refusal, Route};
use crate::http::{self as answer, Answer};
use crate::state::Shared;
use crate::tls::{Tls, TlsError};

/// How long the coordinator link may take to say its last words when the
/// grace period is already over.
const CONTROL_LAST_WORDS: Duration = Duration::from_millis(500);

/// Connections the operator listener (`/metrics`, `/healthz`) serves at once;
/// beyond that a new one is closed at once. A scraper needs one or two.
const OPERATOR_MAX_CONNECTIONS: usize = 64;

/// The bound listeners `run` serves.
#[derive(Debug)]
pub struct Listeners {
    /// Plain HTTP / `ws://`.
    pub plain: TcpListener,
    /// HTTPS / `wss://`, when TLS is configured.
    pub tls: Option<TcpListener>,
    /// `/metrics` and `/healthz`, when `METRICS_ADDRESS` is set.
    pub operator: Option<TcpListener>,
}

/// A listener that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot bind the {what} listener on {addr}: {source}")]
pub struct BindError {
    what: &'static str,
    addr: String,
    source: std::io::Error,
}

impl Listeners {
    /// Binds every listener the configuration asks for.
    pub async fn bind(config: &Config) -> Result<Self, BindError> {
        let backlog = config.listen_backlog;
        let plain = bind(config.bind_address, config.http_port, backlog)
            .await
            .map_err(|source| bind_error("http", config.bind_address, config.http_port, source))?;
        let tls =
            match &config.tls {
                Some(tls) => Some(bind(config.bind_address, tls.port, backlog).await.map_err(
                    |source| bind_error("https", config.bind_address, tls.port, source),
                )?),
                None => None,
            };
        let operator = match config.metrics_address {
            Some(addr) => Some(listen(addr, backlog).map_err(|source| BindError {
                what: "metrics",
                addr: addr.to_string(),
                source,
            })?),
            None => None,
        };
        Ok(Self {
            plain,
            tls,
            operator,
        })
    }
}

fn bind_error(
    what: &'static str,
    ip: Option<IpAddr>,
    port: u16,
    source: std::io::Error,
) -> BindError {
    let addr = ip.map_or_else(
        || format!("port {port}"),
        |ip| SocketAddr::new(ip, port).to_string(),
    );
    BindError { what, addr, source }
}

/// Binds `address:port` with a listen queue of `backlog` connections; with no
/// address, all interfaces (IPv6 dual-stack, else IPv4).
pub async fn bind(
    address: Option<IpAddr>,
    port: u16,
    backlog: u32,
) -> std::io::Result<TcpListener> {
    match address {
        Some(ip) => listen(SocketAddr::new(ip, port), backlog),
        None => match listen(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port), backlog) {
            Ok(listener) => Ok(listener),
            Err(_) => listen(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port), backlog),
        },
    }
}

/// One listening socket, as `TcpListener::bind` makes it (`SO_REUSEADDR`, the
/// system's dual-stack default) but with our backlog instead of 1,024 or 128.
/// The kernel caps the backlog at `net.core.somaxconn`.
fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("coordinator link: {0}")]
    Control(String),
}

/// Runs the server on `listeners` until `shutdown` resolves, then drains
/// within `SHUTDOWN_GRACE_SECONDS`.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    Server::new(config)?.run(listeners, shutdown).await;
    Ok(())
}

/// A configured server, before it runs: tests read its [`Observer`] first.
pub struct Server {
    shared: Arc<Shared>,
    tls: Option<Arc<Tls>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Server {
    pub fn new(config: Config) -> Result<Self, StartError> {
        // Only ring is compiled in, so an error here means it is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = config.tls.as_ref().map(Tls::new).transpose()?.map(Arc::new);
        if config.control.is_none() {
            tracing::warn!(
                "CONTROL_BASE_URL is not set: running stand-alone, every stream key is accepted"
            );
        }
        let shared = Shared::new(config);
        if let Some(control) = &shared.control {
            control
                .check()
                .map_err(|e| StartError::Control(e.to_string()))?;
        }
        Ok(Self { shared, tls })
    }

    /// A read-only view of the running server's state.
    pub fn observer(&self) -> Observer {
        Observer {
            shared: self.shared.clone(),
        }
    }

    pub async fn run(self, listeners: Listeners, shutdown: impl Future<Output = ()>) {
        let Self { shared, tls } = self;
        let drain = shared.drain.clone();
        let control_stop = CancellationToken::new();
        let control_task = shared
            .control
            .as_ref()
            .map(|c| c.spawn(control_stop.clone()));
        // The webhook's senders outlive the sessions, to send their last events.
        let events_stop = CancellationToken::new();
        let senders = tokio_util::task::TaskTracker::new();
        if let Some(webhook) = &shared.webhook {
            for _ in 0..crate::webhook::SENDERS {
                senders.spawn(webhook.clone().sender(events_stop.clone()));
            }
        }
        senders.close();
        log_address("http", &listeners.plain);
        drain.spawn(accept(listeners.plain, shared.clone(), Role::Public(None)));
        if let (Some(listener), Some(tls)) = (listeners.tls, tls) {
            log_address("https", &listener);
            drain.spawn(
                tls.clone()
                    .watch(drain.signal.clone(), shared.metrics.clone()),
            );
            drain.spawn(accept(listener, shared.clone(), Role::Public(Some(tls))));
        }
        if let Some(listener) = listeners.operator {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!("metrics on http://{addr}/metrics");
            }
            drain.spawn(accept(listener, shared.clone(), Role::Operator));
        }
        shutdown.await;
        tracing::info!("shutting down");
        let deadline = Instant::now() + shared.config.shutdown_grace;
        drain.signal.cancel();
        drain.tasks.close();
        if tokio::time::timeout_at(deadline, drain.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("grace period over: connections still open are dropped");
        }
        control_stop.cancel();
        events_stop.cancel();
        let last = deadline.max(Instant::now() + CONTROL_LAST_WORDS);
        if let Some(task) = control_task {
            let _ = tokio::time::timeout_at(last, task).await;
        }
        if let Some(webhook) = &shared.webhook {
            // Each sender is at most one short attempt from done once the queue is empty.
            let _ = tokio::time::timeout_at(last, senders.wait()).await;
            webhook.abandon();
            let in_flight = last + crate::webhook::LAST_ATTEMPT_TIMEOUT;
            let _ = tokio::time::timeout_at(in_flight, senders.wait()).await;
        }
        tracing::info!("stopped");
    }
}

fn log_address(scheme: &str, listener: &TcpListener) {
    match listener.local_addr() {
        Ok(addr) => tracing::info!("listening on {scheme}://{addr}"),
        Err(e) => tracing::warn!(error = %e, "listening on {scheme}, address unknown"),
    }
}

// === Accept loops ===

/// What a listener serves.
#[derive(Clone)]
enum Role {
    /// The streaming paths and the test page; TLS when given.
    Public(Option<Arc<Tls>>),
    /// `/metrics` and `/healthz`.
    Operator,
}

/// Accepts connections until the drain fires; accept errors are logged and backed off.
/// On the operator listener at most [`OPERATOR_MAX_CONNECTIONS`] are served at
/// once, so that idle connections there cannot take the descriptors the
/// streaming port needs.
async fn accept(listener: TcpListener, shared: Arc<Shared>, role: Role) {
    let mut backoff = Duration::from_millis(5);
    let cap = matches!(role, Role::Operator)
        .then(|| Arc::new(tokio::sync::Semaphore::new(OPERATOR_MAX_CONNECTIONS)));
    loop {
        let accepted = tokio::select! {
            () = shared.drain.signal.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, peer)) => {
                backoff = Duration::from_millis(5);
                let permit = match &cap {
                    None => None,
                    Some(cap) => match cap.clone().try_acquire_owned() {
                        Ok(permit) => Some(permit),
                        Err(_) => {
                            tracing::debug!(client.addr = %peer.ip(), "metrics listener full: connection closed");
                            continue;
                        }
                    },
                };
                let task = connection(tcp, peer, shared.clone(), role.clone());
                shared.drain.spawn(async move {
                    task.await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: wait, never give up the listener.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

async fn connection(tcp: TcpStream, peer: SocketAddr, shared: Arc<Shared>, role: Role) {
    let _ = tcp.set_nodelay(true);
    let ip = peer.ip().to_canonical();
    let limits = shared.conn_limits();
    let drain = shared.drain.signal.clone();
    match role {
        Role::Operator => {
            let handler = move |req: Request<Incoming>| {
                let shared = shared.clone();
                async move { operator(&req, &shared) }
            };
            answer::serve(TokioIo::new(tcp), ip, limits, &drain, handler).await;
        }
        Role::Public(tls) => {
            let handler = move |req: Request<Incoming>| {
                let shared = shared.clone();
                async move { public(req, ip, &shared).await }
            };
            let Some(tls) = tls else {
                return answer::serve(TokioIo::new(tcp), ip, limits, &drain, handler).await;
            };
            match tokio::time::timeout(limits.head_timeout, tls.acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    answer::serve(TokioIo::new(stream), ip, limits, &drain, handler).await;
                }
                Ok(Err(e)) => {
                    tracing::debug!(client.addr = %ip, error = %e, "TLS handshake failed")
                }
                Err(_) => tracing::debug!(client.addr = %ip, "TLS handshake timed out"),
            }
        }
    }
}

// === Routes ===

/// The banner `/` answers when the test client is disabled.
pub fn banner() -> &'static str {
    concat!(
        "Websocket streaming server - Version ",
        env!("CARGO_PKG_VERSION")
    )
}

async fn public(mut req: Request<Incoming>, ip: IpAddr, shared: &Arc<Shared>) -> Answer {
    let path = req.uri().path().to_owned();
    match front_door::route(&path) {
        Route::Root if shared.config.disable_test_client => answer::text(StatusCode::OK, banner()),
        Route::Stream { channel, key, kind } => {
            crate::admission::admit(&mut req, ip, shared, channel, key, kind).await
        }
        Route::Root | Route::Other(_) => {
            let asset = (!shared.config.disable_test_client)
                .then(|| crate::test_client::asset(&path))
                .flatten();
            match asset {
                Some(asset) => answer::asset(asset.content_type, asset.body),
                None => Refusal::NotFound.response(),
            }
        }
    }
}

fn operator(req: &Request<Incoming>, shared: &Arc<Shared>) -> Answer {
    match req.uri().path() {
        path if path == "/api" || path.starts_with("/api/") => crate::api::serve(req, shared),
        "/metrics" => answer::with_body(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            shared.metrics_text().into(),
        ),
        "/healthz" => answer::text(StatusCode::OK, "ok\n"),
        _ => Refusal::NotFound.response(),
    }
}

// === Observer ===

/// Read-only view of a server's state, for tests and embedders: what a test
/// waits for instead of scraping logs.
#[derive(Debug, Clone)]
pub struct Observer {
    shared: Arc<Shared>,
}

impl Observer {
    /// Channels with an active publisher.
    pub fn active_channels(&self) -> usize {
        self.shared.hub.active_channels()
    }

    /// Whether `channel` has a publisher: claimed (still being admitted) or active.
    pub fn has_publisher(&self, channel: &str) -> bool {
        self.shared.hub.has_publisher(channel)
    }

    /// Channels with a publisher (claimed or active) or waiting receivers.
    pub fn channel_entries(&self) -> usize {
        self.shared.hub.channel_entries()
    }

    /// Streaming connections `ip` holds against the per-IP limit.
    pub fn ip_slots(&self, ip: IpAddr) -> u32 {
        self.shared.limiter.held(ip)
    }

    /// Whether the coordinator link is up (false stand-alone).
    pub fn control_connected(&self) -> bool {
        self.shared
            .control
            .as_ref()
            .is_some_and(Control::is_connected)
    }

    /// The Prometheus exposition text, as `/metrics` serves it.
    pub fn metrics_text(&self) -> String {
        self.shared.metrics_text()
    }
}
