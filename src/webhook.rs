//! Event webhooks (`EVENT_WEBHOOK_URL`): `publish_start`, `publish_end` and
//! `receiver_kicked`, POSTed as JSON. Never on a stream's path: [`Webhook::emit`]
//! pushes onto a bounded queue (drop-oldest, counted) and returns; a few
//! sender tasks deliver each event with retries and backoff. At shutdown the
//! senders outlive the drain's sessions, so their last events (`publish_end`
//! with reason `shutdown`) are still sent, one short attempt each; what cannot
//! be sent by then is counted as dropped, never lost silently. A webhook that
//! is down costs only the `webhook_events` metric. Keys never appear in an
//! event.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metrics::{Metrics, OutcomeLabel};
use crate::outbound::HttpClient;

/// Events waiting to be sent; when full, the oldest is dropped.
pub(crate) const QUEUE_EVENTS: usize = 1024;
/// Events being sent at once (one sender task each).
pub(crate) const SENDERS: usize = 4;
/// Attempts per event.
const ATTEMPTS: u32 = 3;
/// Time one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Wait before the second attempt; doubled for each later one.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Time one attempt may take once the senders were told to stop.
pub(crate) const LAST_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(500);

/// Why a publisher's stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EndReason {
    ClientClosed,
    /// The operator API's kick.
    Killed,
    /// The coordinator's STREAM-KILL.
    Coordinator,
    Shutdown,
    /// Idle timeout, protocol error, message over the size bound.
    Error,
}

/// One event, as POSTed.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum Event {
    PublishStart {
        time: String,
        channel: String,
        id: u64,
        ip: String,
    },
    PublishEnd {
        time: String,
        channel: String,
        id: u64,
        ip: String,
        duration_seconds: f64,
        chunks: u64,
        bytes: u64,
        reason: EndReason,
    },
    ReceiverKicked {
        time: String,
        channel: String,
        id: u64,
        ip: String,
        kind: &'static str,
        behind_bytes: u64,
    },
}

/// Now, as the events' `time`.
pub(crate) fn now() -> String {
    crate::clock::rfc3339(SystemTime::now())
}

pub(crate) fn ip(ip: IpAddr) -> String {
    ip.to_string()
}

/// The queue and its senders.
#[derive(Debug)]
pub(crate) struct Webhook {
    url: url::Url,
    client: HttpClient,
    queue: Mutex<VecDeque<Event>>,
    ready: Notify,
    metrics: Arc<Metrics>,
}

impl Webhook {
    pub(crate) fn new(url: url::Url, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            client: HttpClient::for_url(&url),
            url,
            queue: Mutex::new(VecDeque::with_capacity(QUEUE_EVENTS)),
            ready: Notify::new(),
            metrics,
        })
    }

    fn count(&self, outcome: &'static str) {
        self.metrics
            .webhook_events
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// Queues `event`; never waits.
    pub(crate) fn emit(&self, event: Event) {
        let dropped = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            let dropped = if queue.len() >= QUEUE_EVENTS {
                queue.pop_front().is_some()
            } else {
                false
            };
            queue.push_back(event);
            dropped
        };
        if dropped {
            self.count("dropped");
        }
        self.ready.notify_one();
    }

    fn pop(&self) -> Option<Event> {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    }

    /// One sender: delivers events until `stop` (which the server fires once
    /// every session has ended), then what is left, one short attempt each.
    pub(crate) async fn sender(self: Arc<Self>, stop: CancellationToken) {
        loop {
            if let Some(event) = self.pop() {
                self.deliver(&event, &stop).await;
                continue;
            }
            if stop.is_cancelled() {
                return;
            }
            tokio::select! {
                () = self.ready.notified() => {}
                () = stop.cancelled() => {}
            }
        }
    }

    /// Counts the events still queued when the senders' time is up as dropped.
    pub(crate) fn abandon(&self) {
        let left = std::mem::take(&mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner));
        if !left.is_empty() {
            tracing::warn!(events = left.len(), "webhook events not sent before exit");
            self.metrics
                .webhook_events
                .get_or_create(&OutcomeLabel { outcome: "dropped" })
                .inc_by(left.len() as u64);
        }
    }

    async fn deliver(&self, event: &Event, shutdown: &CancellationToken) {
        let body = match serde_json::to_vec(event) {
            Ok(body) => Bytes::from(body),
            Err(_) => return self.count("failed"),
        };
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let limit = if shutdown.is_cancelled() {
                LAST_ATTEMPT_TIMEOUT
            } else {
                ATTEMPT_TIMEOUT
            };
            let post = self.client.post_json(&self.url, body.clone());
            tokio::pin!(post);
            let sent = tokio::select! {
                sent = tokio::time::timeout(limit, &mut post) => sent,
                // Told to stop mid-attempt: this attempt gets the short bound from now.
                () = shutdown.cancelled(), if limit == ATTEMPT_TIMEOUT => {
                    tokio::time::timeout(LAST_ATTEMPT_TIMEOUT, &mut post).await
                }
            };
            let error = match sent {
                Ok(Ok(status)) if status.is_success() => return self.count("sent"),
                Ok(Ok(status)) => format!("status {status}"),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "timed out".to_owned(),
            };
            if attempt == ATTEMPTS || shutdown.is_cancelled() {
                tracing::warn!(error, attempts = attempt, "webhook event not delivered");
                return self.count("failed");
            }
            tracing::debug!(error, attempt, "webhook event failed; retrying");
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.cancelled() => {}
            }
            backoff *= 2;
        }
    }
}
