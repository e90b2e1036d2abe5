//! Accept loop, per-connection HTTP handling, and the dispatch of streaming
//! requests to sessions once the front door lets them through.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access::IpLimiter;
use crate::config::Config;
use crate::control::Control;
use crate::front_door::{self, text_response, Refusal, Route};
use crate::hub::{Hub, HubSettings, Kind};
use crate::metrics::{Metrics, OutcomeLabel};
use crate::session::{self, Limits, SessionInfo};
use crate::tls::Tls;

/// Everything a connection needs, shared by all of them.
#[derive(Debug)]
pub struct AppState {
    pub config: Config,
    pub hub: Arc<Hub>,
    pub limiter: IpLimiter,
    /// The coordinator link; `None` stand-alone.
    pub control: Option<Control>,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    next_session: AtomicU64,
}

impl AppState {
    pub fn new(config: Config) -> Arc<Self> {
        let hub = Hub::new(HubSettings {
            cache_limit: config.gop_cache_bytes,
            lag_limit: config.receiver_queue_bytes,
        });
        let limiter = IpLimiter::new(
            config.max_ip_concurrent,
            config.concurrent_limit_whitelist.clone(),
        );
        let control = config.control.clone().map(|settings| {
            Control::new(settings, hub.clone(), config.heartbeat, config.idle_timeout)
        });
        Arc::new(Self {
            config,
            hub,
            limiter,
            control,
            metrics: Arc::new(Metrics::default()),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            next_session: AtomicU64::new(1),
        })
    }

    fn limits(&self, kind: Kind) -> Limits {
        Limits {
            heartbeat: self.config.heartbeat,
            idle_timeout: self.config.idle_timeout,
            max_message_bytes: if kind == Kind::Publish {
                self.config.max_message_bytes
            } else {
                self.config.max_client_message_bytes
            },
        }
    }
}

/// The banner `/` answers when the test client is disabled.
pub fn banner() -> &'static str {
    concat!(
        "Websocket streaming server - Version ",
        env!("CARGO_PKG_VERSION")
    )
}

/// Accepts connections (TLS ones when `tls` is given) until `state.shutdown` is cancelled.
pub async fn serve(listener: TcpListener, state: Arc<AppState>, tls: Option<Arc<Tls>>) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            () = state.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, peer)) => {
                backoff = Duration::from_millis(5);
                let state = state.clone();
                state
                    .tasks
                    .clone()
                    .spawn(connection(tcp, peer, state, tls.clone()));
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

async fn connection(tcp: TcpStream, peer: SocketAddr, state: Arc<AppState>, tls: Option<Arc<Tls>>) {
    let _ = tcp.set_nodelay(true);
    let ip = peer.ip().to_canonical();
    let Some(tls) = tls else {
        return serve_http(TokioIo::new(tcp), ip, state).await;
    };
    match tokio::time::timeout(state.config.upgrade_timeout, tls.acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => serve_http(TokioIo::new(stream), ip, state).await,
        Ok(Err(e)) => tracing::debug!(client.addr = %ip, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(client.addr = %ip, "TLS handshake timed out"),
    }
}

async fn serve_http<I>(io: I, ip: IpAddr, state: Arc<AppState>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc_state = state.clone();
    let service = service_fn(move |req| {
        let state = svc_state.clone();
        async move { Ok::<_, Infallible>(handle(req, ip, &state).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(state.config.upgrade_timeout)
        .max_buf_size(state.config.max_request_head_bytes);
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = state.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(client.addr = %ip, error = %e, "http connection ended with an error");
    }
}

async fn handle(
    mut req: Request<Incoming>,
    ip: IpAddr,
    state: &Arc<AppState>,
) -> Response<Full<Bytes>> {
    match front_door::route(req.uri().path()) {
        Route::Root if state.config.disable_test_client => text_response(StatusCode::OK, banner()),
        Route::Stream { channel, key, kind } => {
            let (channel, key, kind) = (channel.to_owned(), key.to_owned(), kind.to_owned());
            match streaming(&mut req, ip, state, &channel, &key, &kind).await {
                Ok(response) => response,
                Err(refusal) => refusal.response(),
            }
        }
        Route::Root | Route::Other(_) => page(req.uri().path(), state),
    }
}

/// The built-in test client's files, or `404 Not found.`.
fn page(path: &str, state: &AppState) -> Response<Full<Bytes>> {
    let asset = (!state.config.disable_test_client)
        .then(|| crate::test_client::asset(path))
        .flatten();
    let Some(asset) = asset else {
        return Refusal::NotFound.response();
    };
    let mut response = Response::new(Full::new(Bytes::from_static(asset.body)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(asset.content_type),
    );
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    response
}

async fn streaming(
    req: &mut Request<Incoming>,
    ip: IpAddr,
    state: &Arc<AppState>,
    channel: &str,
    key: &str,
    kind: &str,
) -> Result<Response<Full<Bytes>>, Refusal> {
    let id = state.next_session.fetch_add(1, Ordering::Relaxed);
    let tag = format!("#{id} ({ip})");
    let refused = |refusal: Refusal| {
        let outcome = refusal.body().trim_end();
        state
            .metrics
            .refused
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
        tracing::info!(target: "request", status = refusal.status().as_u16(), "{tag} refused: {refusal}");
        refusal
    };
    let slot = state
        .limiter
        .acquire(ip)
        .ok_or_else(|| refused(Refusal::TooManyRequests))?;
    let max = state.config.id_max_length;
    let kind = front_door::validate(channel, key, kind, max).map_err(refused)?;
    tracing::info!(target: "request", channel, kind = kind.as_str(), "{tag} request");
    let info = SessionInfo {
        id,
        ip,
        channel: channel.to_owned(),
        kind,
        metrics: state.metrics.clone(),
    };
    let limits = state.limits(kind);
    let shutdown = state.shutdown.clone();
    let upgrade_timeout = state.config.upgrade_timeout;
    if kind == Kind::Publish {
        let claim = state
            .hub
            .claim(channel, key)
            .map_err(|_| refused(Refusal::AlreadyPublishing))?;
        front_door::check_upgrade(req.method(), req.headers()).map_err(refused)?;
        let ticket = match &state.control {
            None => None,
            Some(control) => {
                tracing::info!(target: "request", channel, "{tag} publish request sent to the coordinator");
                let answer = control.authorize(channel, key, ip).await;
                let outcome = match &answer {
                    Ok(_) => "accepted",
                    Err(denied) => denied.label(),
                };
                state
                    .metrics
                    .publish_requests
                    .get_or_create(&OutcomeLabel { outcome })
                    .inc();
                match answer {
                    Ok(ticket) => Some(ticket),
                    Err(denied) => {
                        tracing::info!(target: "request", channel, reason = %denied, "{tag} publish denied");
                        return Err(refused(Refusal::PublishDenied));
                    }
                }
            }
        };
        let (response, upgrade) = upgrade(req).map_err(refused)?;
        let stream_id = ticket.as_ref().map(|t| t.stream_id.clone());
        if let Some(id) = &stream_id {
            claim.set_stream_id(id);
        }
        tracing::info!(target: "request", channel, stream_id = stream_id.as_deref().unwrap_or(""), "{tag} publish accepted");
        state.tasks.spawn(async move {
            let _slot = slot;
            if let Some(io) = finish_upgrade(upgrade, upgrade_timeout, &info).await {
                session::run_publisher(io, info, claim, stream_id, limits, shutdown).await;
            }
            // The claim is gone (receivers closed, channel freed); PUBLISH-END goes last.
            drop(ticket);
        });
        return Ok(response);
    }
    if !state.config.play_whitelist.contains(ip) {
        return Err(refused(Refusal::NotWhitelisted));
    }
    front_door::check_upgrade(req.method(), req.headers()).map_err(refused)?;
    let (response, upgrade) = upgrade(req).map_err(refused)?;
    let hub = state.hub.clone();
    let key = key.to_owned();
    state.tasks.spawn(async move {
        let _slot = slot;
        if let Some(io) = finish_upgrade(upgrade, upgrade_timeout, &info).await {
            let subscription = hub.subscribe(&info.channel, &key, kind);
            session::run_receiver(io, info, subscription, limits, shutdown).await;
        }
    });
    Ok(response)
}

type UpgradeFut = fastwebsockets::upgrade::UpgradeFut;

fn upgrade(req: &mut Request<Incoming>) -> Result<(Response<Full<Bytes>>, UpgradeFut), Refusal> {
    let (response, fut) = fastwebsockets::upgrade::upgrade(req).map_err(|_| Refusal::BadRequest)?;
    Ok((response.map(|_| Full::new(Bytes::new())), fut))
}

async fn finish_upgrade(
    fut: UpgradeFut,
    limit: Duration,
    info: &SessionInfo,
) -> Option<hyper::upgrade::Upgraded> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(ws)) => Some(ws.into_inner().into_inner()),
        Ok(Err(e)) => {
            tracing::info!(target: "request", error = %e, "{} upgrade failed", info.tag());
            None
        }
        Err(_) => {
            tracing::info!(target: "request", "{} upgrade timed out", info.tag());
            None
        }
    }
}
