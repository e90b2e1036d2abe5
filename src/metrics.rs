//! Prometheus metrics and `/healthz`, on their own optional listener
//! (`METRICS_ADDRESS`), so no path of the public listeners changes.
//!
//! Counters are bumped on the hot path with relaxed atomics (per message or per
//! batch, never per byte); gauges that describe state are read at scrape time.

use std::convert::Infallible;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::server::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// Every metric the server exports.
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections: Family<KindLabel, Gauge>,
    pub chunks_in: Counter,
    pub bytes_in: Counter,
    pub chunks_out: Counter,
    pub bytes_out: Counter,
    pub receivers_kicked: Counter,
    pub publish_requests: Family<OutcomeLabel, Counter>,
    pub refused: Family<OutcomeLabel, Counter>,
    channels_active: Gauge,
    cache_bytes: Gauge<u64, AtomicU64>,
    control_connected: Gauge,
}

impl Metrics {
    fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("ws_stream");
        r.register(
            "connections",
            "Open WebSocket sessions by kind",
            self.connections.clone(),
        );
        r.register(
            "chunks_in",
            "Chunks received from publishers",
            self.chunks_in.clone(),
        );
        r.register(
            "bytes_in",
            "Bytes received from publishers",
            self.bytes_in.clone(),
        );
        r.register(
            "chunks_out",
            "Chunks written to receivers",
            self.chunks_out.clone(),
        );
        r.register(
            "bytes_out",
            "Chunk bytes written to receivers",
            self.bytes_out.clone(),
        );
        r.register(
            "receivers_kicked",
            "Receivers closed for falling behind",
            self.receivers_kicked.clone(),
        );
        r.register(
            "publish_requests",
            "Publish requests by outcome",
            self.publish_requests.clone(),
        );
        r.register(
            "requests_refused",
            "Streaming requests refused before the upgrade, by answer",
            self.refused.clone(),
        );
        r.register(
            "channels_active",
            "Channels with an active publisher",
            self.channels_active.clone(),
        );
        r.register(
            "cache_bytes",
            "Bytes held by the caches of all sessions",
            self.cache_bytes.clone(),
        );
        r.register(
            "control_connected",
            "1 while the coordinator link is up",
            self.control_connected.clone(),
        );
        r
    }

    /// The exposition text, with state gauges refreshed from `state`.
    pub fn render(&self, state: &AppState) -> String {
        self.channels_active.set(state.hub.active_channels() as i64);
        self.cache_bytes.set(state.hub.cache_bytes());
        let connected = state.control.as_ref().is_some_and(|c| c.is_connected());
        self.control_connected.set(i64::from(connected));
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry());
        text
    }
}

/// Open-session gauge guard: +1 now, -1 when dropped.
#[derive(Debug)]
pub struct Open {
    gauge: Gauge,
}

impl Open {
    pub fn new(metrics: &Metrics, kind: &'static str) -> Self {
        let gauge = metrics
            .connections
            .get_or_create(&KindLabel { kind })
            .clone();
        gauge.inc();
        Self { gauge }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Serves `/metrics` and `/healthz` until `shutdown`.
pub async fn serve(listener: TcpListener, state: Arc<AppState>, shutdown: CancellationToken) {
    loop {
        let (tcp, _) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(answer(&req, &state)) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn answer(req: &Request<Incoming>, state: &AppState) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match req.uri().path() {
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.metrics.render(state),
        ),
        "/healthz" => (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "ok\n".to_owned(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "Not found.".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, value);
    }
    response
}
