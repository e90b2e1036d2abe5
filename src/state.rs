//! What every connection shares: the configuration, the hub, the per-IP
//! limiter, the coordinator link, the metrics, and the drain that every task
//! is spawned on and watches.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access::IpLimiter;
use crate::config::Config;
use crate::control::Control;
use crate::http::ConnLimits;
use crate::hub::{Hub, HubSettings};
use crate::metrics::Metrics;

// === Drain ===

/// The shutdown signal every task watches and the tracker every task is spawned on.
#[derive(Debug, Clone, Default)]
pub(crate) struct Drain {
    pub(crate) signal: CancellationToken,
    pub(crate) tasks: TaskTracker,
}

impl Drain {
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }
}

// === Shared state ===

/// Everything a connection needs, shared by all of them.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) hub: Arc<Hub>,
    pub(crate) limiter: IpLimiter,
    /// The coordinator link; `None` stand-alone.
    pub(crate) control: Option<Control>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) drain: Drain,
    /// The authorisation callback (`AUTH_HTTP_URL`); `None` when not set.
    pub(crate) auth: Option<crate::auth::AuthHook>,
    /// The event webhook (`EVENT_WEBHOOK_URL`); `None` when not set.
    pub(crate) webhook: Option<Arc<crate::webhook::Webhook>>,
    /// Pulls channels from origins (`ORIGIN_URLS`); `None` when not set.
    pub(crate) edge: Option<Arc<crate::edge::Edge>>,
    /// The lag checks of `play` readers whose writes do not drain.
    pub(crate) play_lag: Arc<crate::play_lag::LagSweeper>,
    next_session: AtomicU64,
}

impl Shared {
    pub(crate) fn new(config: Config) -> Arc<Self> {
        let metrics = Arc::new(Metrics::default());
        let webhook = config
            .operator
            .webhook_url
            .clone()
            .map(|url| crate::webhook::Webhook::new(url, metrics.clone()));
        let settings = HubSettings {
            cache_limit: config.gop_cache_bytes,
            receiver_queue_bytes: config.receiver_queue_bytes,
            lagging: config.lagging_receivers,
            ingest_lead_bytes: config.ingest_lead_bytes(),
            pull: config.edge.is_some(),
        };
        let hub = Hub::with_events(settings, webhook.clone(), Some(metrics.clone()));
        let limiter = IpLimiter::new(
            config.max_ip_concurrent,
            config.concurrent_limit_whitelist.clone(),
        );
        let control = config.control.clone().map(|settings| {
            let (heartbeat, silence) = (config.heartbeat, config.idle_timeout);
            Control::new(settings, hub.clone(), metrics.clone(), heartbeat, silence)
        });
        let auth = config
            .operator
            .auth
            .clone()
            .map(|settings| crate::auth::AuthHook::new(settings, metrics.clone()));
        let drain = Drain::default();
        let edge = config.edge.clone().map(|settings| {
            let limits = crate::edge::UpstreamLimits {
                heartbeat: config.heartbeat,
                idle_timeout: config.idle_timeout,
                max_message_bytes: config.max_message_bytes,
            };
            crate::edge::Edge::new(
                settings,
                limits,
                hub.clone(),
                metrics.clone(),
                drain.signal.clone(),
                drain.tasks.clone(),
            )
        });
        Arc::new(Self {
            config,
            hub,
            limiter,
            control,
            metrics,
            drain,
            auth,
            webhook,
            edge,
            play_lag: Arc::default(),
            next_session: AtomicU64::new(1),
        })
    }

    pub(crate) fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn conn_limits(&self) -> ConnLimits {
        ConnLimits {
            head_timeout: self.config.upgrade_timeout,
            max_head_bytes: self.config.max_request_head_bytes,
        }
    }

    /// The exposition text, with the state gauges read now.
    pub(crate) fn metrics_text(&self) -> String {
        let connected = self.control.as_ref().is_some_and(Control::is_connected);
        self.metrics.render(crate::metrics::State {
            active_channels: self.hub.active_channels(),
            cache_bytes: self.hub.cache_bytes(),
            control_connected: connected,
            control_pending: self.control.as_ref().map_or(0, Control::pending),
        })
    }
}
