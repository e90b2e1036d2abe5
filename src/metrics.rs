//! The Prometheus registry. The operator listener (`METRICS_ADDRESS`, served
//! by `server`) renders it; no path of the public listeners changes.
//!
//! Counters are bumped on the hot path with relaxed atomics (per message or per
//! batch, never per byte); gauges that describe state are read at scrape time
//! and handed in as a [`State`].

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabel {
    pub(crate) kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabel {
    pub(crate) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StateLabel {
    pub(crate) state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    pub(crate) reason: &'static str,
}

/// State read at scrape time by the caller (the hub and the control link).
#[derive(Debug, Clone, Copy)]
pub(crate) struct State {
    pub(crate) active_channels: usize,
    pub(crate) cache_bytes: u64,
    pub(crate) control_connected: bool,
    pub(crate) control_pending: usize,
}

/// Every metric the server exports.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) connections: Family<KindLabel, Gauge>,
    receivers: Family<StateLabel, Gauge>,
    pub(crate) receivers_started: Counter,
    pub(crate) chunks_in: Counter,
    pub(crate) bytes_in: Counter,
    pub(crate) chunks_out: Counter,
    pub(crate) bytes_out: Counter,
    pub(crate) receivers_kicked: Counter,
    pub(crate) receivers_skipped: Counter,
    pub(crate) skipped_bytes: Counter,
    pub(crate) ingest_pauses: Counter,
    pub(crate) ingest_paused_seconds: Counter<f64, AtomicU64>,
    pub(crate) publish_requests: Family<OutcomeLabel, Counter>,
    pub(crate) refused: Family<ReasonLabel, Counter>,
    pub(crate) tls_reloads: Family<OutcomeLabel, Counter>,
    pub(crate) control_dials: Family<OutcomeLabel, Counter>,
    pub(crate) auth_requests: Family<OutcomeLabel, Counter>,
    pub(crate) auth_seconds: Latency,
    pub(crate) webhook_events: Family<OutcomeLabel, Counter>,
    upstreams: Family<StateLabel, Gauge>,
    pub(crate) upstream_failures: Family<ReasonLabel, Counter>,
    pub(crate) pulls_started: Counter,
    pub(crate) pulls_ended: Family<ReasonLabel, Counter>,
    channels_active: Gauge,
    cache_bytes: Gauge<u64, AtomicU64>,
    control_connected: Gauge,
    control_pending: Gauge,
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
            "receivers",
            "Receivers and probes by state: waiting for a publisher, or playing",
            self.receivers.clone(),
        );
        r.register(
            "receivers_started",
            "Receivers and probes that started playing",
            self.receivers_started.clone(),
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
            "receivers_skipped",
            "Receivers over their queue bound moved to the newest join point instead of being closed",
            self.receivers_skipped.clone(),
        );
        r.register(
            "skipped_bytes",
            "Stream bytes skipped receivers never got",
            self.skipped_bytes.clone(),
        );
        r.register(
            "ingest_pauses",
            "Times a publisher's reading paused because its receivers were over INGEST_LEAD_MB behind (over a tenth, or one catching up)",
            self.ingest_pauses.clone(),
        );
        r.register_with_unit(
            "ingest_paused",
            "Time publishers' reading was paused by the ingest hold",
            prometheus_client::registry::Unit::Seconds,
            self.ingest_paused_seconds.clone(),
        );
        r.register(
            "publish_requests",
            "Publish requests by outcome",
            self.publish_requests.clone(),
        );
        r.register(
            "requests_refused",
            "Streaming requests refused before the upgrade, by reason",
            self.refused.clone(),
        );
        r.register(
            "control_dials",
            "Dials to the coordinator by outcome (connected, failed)",
            self.control_dials.clone(),
        );
        r.register(
            "tls_reloads",
            "Changed certificate files, reloaded or rejected (the previous pair kept)",
            self.tls_reloads.clone(),
        );
        r.register(
            "auth_requests",
            "Authorisation callback requests by outcome (allowed, denied, timeout, error, overloaded)",
            self.auth_requests.clone(),
        );
        r.register(
            "auth_duration_seconds",
            "Time the authorisation callback took to answer (or to fail)",
            self.auth_seconds.0.clone(),
        );
        r.register(
            "webhook_events",
            "Webhook events by outcome (sent, failed after retries, dropped from a full queue)",
            self.webhook_events.clone(),
        );
        r.register(
            "edge_upstreams",
            "Upstream connections of an edge by state (connecting, waiting for a publisher, streaming)",
            self.upstreams.clone(),
        );
        r.register(
            "edge_upstream_failures",
            "Upstream connections that failed, by reason (connect, refused, closed, idle, lost)",
            self.upstream_failures.clone(),
        );
        r.register(
            "edge_pulls_started",
            "Channels an edge started pulling from its origins",
            self.pulls_started.clone(),
        );
        r.register(
            "edge_pulls_ended",
            "Pulls that ended, by reason (end, lost, invalid_key, linger, killed, shutdown)",
            self.pulls_ended.clone(),
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
        r.register(
            "control_pending_requests",
            "Publish requests waiting for the coordinator's answer",
            self.control_pending.clone(),
        );
        r
    }

    /// The exposition text, with the state gauges set from `state`.
    pub(crate) fn render(&self, state: State) -> String {
        self.channels_active
            .set(i64::try_from(state.active_channels).unwrap_or(i64::MAX));
        self.cache_bytes.set(state.cache_bytes);
        self.control_connected
            .set(i64::from(state.control_connected));
        self.control_pending
            .set(i64::try_from(state.control_pending).unwrap_or(i64::MAX));
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry());
        text
    }
}

/// A latency histogram, 1 ms to about 16 s.
#[derive(Debug, Clone)]
pub(crate) struct Latency(Histogram);

impl Default for Latency {
    fn default() -> Self {
        Self(Histogram::new(exponential_buckets(0.001, 2.0, 15)))
    }
}

impl Latency {
    pub(crate) fn observe(&self, seconds: f64) {
        self.0.observe(seconds);
    }
}

/// Open-session gauge guard: +1 now, -1 when dropped.
#[derive(Debug)]
pub(crate) struct Open {
    gauge: Gauge,
}

impl Open {
    /// A WebSocket session of `kind`.
    pub(crate) fn connection(metrics: &Metrics, kind: &'static str) -> Self {
        Self::on(
            metrics
                .connections
                .get_or_create(&KindLabel { kind })
                .clone(),
        )
    }

    /// A receiver in `state`: `waiting` for a publisher or `playing`.
    pub(crate) fn receiver(metrics: &Metrics, state: &'static str) -> Self {
        Self::on(
            metrics
                .receivers
                .get_or_create(&StateLabel { state })
                .clone(),
        )
    }

    /// An edge's upstream connection in `state`: `connecting`, `waiting` or `streaming`.
    pub(crate) fn upstream(metrics: &Metrics, state: &'static str) -> Self {
        Self::on(
            metrics
                .upstreams
                .get_or_create(&StateLabel { state })
                .clone(),
        )
    }

    fn on(gauge: Gauge) -> Self {
        gauge.inc();
        Self { gauge }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}
