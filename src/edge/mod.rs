//! Edge relays: a channel without a local publisher is pulled from the origins
//! (`ORIGIN_URLS`) by one upstream `receive` per channel, whose binary messages
//! are appended to a hub broadcast exactly as a local publisher's chunks are.
//!
//! `upstream` is one connection to one origin (dial, heartbeats, the messages
//! that matter); `pull` is the task per pulled channel: the race over the
//! origins, the streaming, the end or loss, and the linger.

mod pull;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use crate::config::EdgeSettings;
use crate::hub::{Hub, PublisherClaim};
use crate::metrics::Metrics;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Timers and bounds of every upstream connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UpstreamLimits {
    /// Interval of the pings that keep the origin's idle timer from firing.
    pub(crate) heartbeat: Duration,
    /// Silence (no heartbeat, no chunk) after which the origin counts as lost.
    pub(crate) idle_timeout: Duration,
    /// Largest message accepted from an origin (`MAX_MESSAGE_SIZE_MB`).
    pub(crate) max_message_bytes: usize,
}

/// What every pull of this server shares.
#[derive(Debug)]
pub(crate) struct Edge {
    settings: EdgeSettings,
    limits: UpstreamLimits,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    /// The server's shutdown signal, and the tracker the drain waits for.
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Edge {
    pub(crate) fn new(
        settings: EdgeSettings,
        limits: UpstreamLimits,
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Arc<Self> {
        Arc::new(Self {
            settings,
            limits,
            hub,
            metrics,
            shutdown,
            tasks,
        })
    }

    /// Starts the pull of `channel` that `claim` (made by the hub for a receiver with `key`) holds.
    pub(crate) fn start(self: &Arc<Self>, claim: PublisherClaim, channel: String, key: String) {
        let edge = self.clone();
        self.tasks.spawn(pull::run(edge, claim, channel, key));
    }
}
