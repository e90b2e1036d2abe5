//! The coordinator link (docs/PROTOCOL.md §3): publish authorisation, stream ends, kills.
//!
//! Publish requests wait in `pending` for the coordinator's answer on the
//! current link; `client` runs the link itself (dial, heartbeats, reconnect)
//! and hands every incoming message to [`Control::handle`].

mod client;

pub(crate) use self::client::RequestError;
pub mod codec;
mod jwt;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

use self::codec::{method, param, ControlMessage};
use crate::config::ControlSettings;
use crate::hub::Hub;
use crate::metrics::{Metrics, OutcomeLabel};

/// Expired request ids remembered, so a late PUBLISH-ACCEPT can be answered with PUBLISH-END.
const EXPIRED_MEMORY: usize = 4096;

/// Why a publisher was not authorised (all answered `403 Invalid Key.`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Denied {
    #[error("the coordinator denied it")]
    ByCoordinator,
    #[error("the coordinator is not connected")]
    NotConnected,
    #[error("the coordinator did not answer in time")]
    Timeout,
    #[error("the control link dropped while waiting")]
    LinkDropped,
}

impl Denied {
    /// Short label for metrics.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::ByCoordinator => "denied",
            Self::NotConnected => "not_connected",
            Self::Timeout => "timeout",
            Self::LinkDropped => "link_dropped",
        }
    }
}

/// Handle to the coordinator link, shared by every connection.
#[derive(Debug, Clone)]
pub(crate) struct Control {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: ControlSettings,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    heartbeat: std::time::Duration,
    silence: std::time::Duration,
    next_request: AtomicU64,
    link: Mutex<Link>,
}

#[derive(Debug, Default)]
struct Link {
    /// Outgoing messages of the current connection; `None` while down.
    out: Option<mpsc::Sender<ControlMessage>>,
    pending: HashMap<u64, Pending>,
    expired: HashMap<u64, String>,
    expired_order: VecDeque<u64>,
}

#[derive(Debug)]
struct Pending {
    channel: String,
    reply: oneshot::Sender<Option<String>>,
}

/// An accepted stream. Dropping it sends PUBLISH-END (when the link is up).
#[derive(Debug)]
pub(crate) struct StreamTicket {
    control: Control,
    channel: String,
    pub(crate) stream_id: String,
}

impl Drop for StreamTicket {
    fn drop(&mut self) {
        self.control.publish_end(&self.channel, &self.stream_id);
    }
}

impl Control {
    pub(crate) fn new(
        settings: ControlSettings,
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
        heartbeat: std::time::Duration,
        silence: std::time::Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                hub,
                metrics,
                heartbeat,
                silence,
                next_request: AtomicU64::new(0),
                link: Mutex::new(Link::default()),
            }),
        }
    }

    fn link(&self) -> MutexGuard<'_, Link> {
        // Every critical section leaves the maps consistent; a poisoned lock is still usable.
        self.inner
            .link
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.link().out.is_some()
    }

    /// Asks the coordinator whether `key` may publish on `channel`.
    pub(crate) async fn authorize(
        &self,
        channel: &str,
        key: &str,
        ip: IpAddr,
    ) -> Result<StreamTicket, Denied> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut link = self.link();
            let Some(out) = link.out.clone() else {
                return Err(Denied::NotConnected);
            };
            let id = self.inner.next_request.fetch_add(1, Ordering::Relaxed);
            let request = ControlMessage::new(method::PUBLISH_REQUEST)
                .with_param(param::REQUEST_ID, id.to_string())
                .with_param(param::STREAM_CHANNEL, channel)
                .with_param(param::STREAM_KEY, key)
                .with_param(param::USER_IP, ip.to_canonical().to_string());
            if out.try_send(request).is_err() {
                return Err(Denied::NotConnected);
            }
            link.pending.insert(
                id,
                Pending {
                    channel: channel.to_owned(),
                    reply: tx,
                },
            );
            id
        };
        let guard = PendingGuard { control: self, id };
        let answer = timeout(self.inner.settings.publish_auth_timeout, rx).await;
        drop(guard);
        match answer {
            Ok(Ok(Some(stream_id))) => Ok(StreamTicket {
                control: self.clone(),
                channel: channel.to_owned(),
                stream_id,
            }),
            Ok(Ok(None)) => Err(Denied::ByCoordinator),
            Ok(Err(_)) => Err(Denied::LinkDropped),
            Err(_) => Err(Denied::Timeout),
        }
    }

    /// Tells the coordinator a stream ended (dropped when the link is down).
    pub(crate) fn publish_end(&self, channel: &str, stream_id: &str) {
        let msg = ControlMessage::new(method::PUBLISH_END)
            .with_param(param::STREAM_CHANNEL, channel)
            .with_param(param::STREAM_ID, stream_id);
        self.send(msg);
    }

    fn send(&self, msg: ControlMessage) {
        let link = self.link();
        if let Some(out) = &link.out {
            if out.try_send(msg).is_err() {
                tracing::warn!(
                    "control link backlog full: a message to the coordinator was dropped"
                );
            }
        }
    }

    /// Handles one message from the coordinator.
    pub(crate) fn handle(&self, msg: &ControlMessage) {
        match msg.method() {
            method::HEARTBEAT => {}
            method::ERROR => tracing::warn!(
                code = msg.param(param::ERROR_CODE).unwrap_or(""),
                message = msg.param(param::ERROR_MESSAGE).unwrap_or(""),
                "coordinator reported an error"
            ),
            method::PUBLISH_ACCEPT => self.answer(msg, true),
            method::PUBLISH_DENY => self.answer(msg, false),
            method::STREAM_KILL => self.kill(msg),
            other => tracing::debug!(method = other, "unknown control message ignored"),
        }
    }

    fn answer(&self, msg: &ControlMessage, accepted: bool) {
        let Some(id) = msg
            .param(param::REQUEST_ID)
            .and_then(|v| v.parse::<u64>().ok())
        else {
            tracing::warn!(
                method = msg.method(),
                "control reply without a valid Request-ID ignored"
            );
            return;
        };
        let stream_id = msg.param(param::STREAM_ID).unwrap_or("").to_owned();
        if accepted && stream_id.is_empty() {
            tracing::warn!(
                request = id,
                "PUBLISH-ACCEPT without Stream-ID: treated as a denial"
            );
        }
        let decision = (accepted && !stream_id.is_empty()).then(|| stream_id.clone());
        let mut link = self.link();
        if let Some(pending) = link.pending.remove(&id) {
            if let Err(Some(late)) = pending.reply.send(decision) {
                // The publisher gave up in the meantime: free the stream on the coordinator.
                drop(link);
                self.publish_end(&pending.channel, &late);
            }
        } else if let Some(channel) = link.expired.remove(&id) {
            drop(link);
            if accepted && !stream_id.is_empty() {
                tracing::info!(
                    request = id,
                    "late PUBLISH-ACCEPT answered with PUBLISH-END"
                );
                self.publish_end(&channel, &stream_id);
            }
        } else {
            tracing::debug!(request = id, "control reply for an unknown request ignored");
        }
    }

    fn kill(&self, msg: &ControlMessage) {
        let channel = msg.param(param::STREAM_CHANNEL).unwrap_or("");
        let id = msg.param(param::STREAM_ID).unwrap_or("");
        let id = (!id.is_empty() && id != "*").then_some(id);
        let killed = self.inner.hub.kill(channel, id);
        tracing::info!(channel, killed, "stream kill from the coordinator");
    }

    /// A new link is up: route messages to it and close every publisher (the coordinator forgot them).
    fn link_up(&self, out: mpsc::Sender<ControlMessage>) {
        self.link().out = Some(out);
        let closed = self.inner.hub.kill_all();
        if closed > 0 {
            tracing::info!(
                closed,
                "publishers closed after (re)connecting to the coordinator"
            );
        }
    }

    /// The link is down: pending requests are denied at once.
    fn link_down(&self) {
        let mut link = self.link();
        link.out = None;
        link.pending.clear();
    }

    fn expire(&self, id: u64) {
        let mut link = self.link();
        if let Some(pending) = link.pending.remove(&id) {
            link.expired.insert(id, pending.channel);
            link.expired_order.push_back(id);
            while link.expired_order.len() > EXPIRED_MEMORY {
                if let Some(old) = link.expired_order.pop_front() {
                    link.expired.remove(&old);
                }
            }
        }
    }

    /// Publish requests waiting for the coordinator's answer.
    pub(crate) fn pending(&self) -> usize {
        self.link().pending.len()
    }

    /// Counts one dial by its outcome (`connected`, `failed`).
    fn dialled(&self, outcome: &'static str) {
        let dials = &self.inner.metrics.control_dials;
        dials.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// Checks that the settings make a valid dial request (a fault is a start-up error).
    pub(crate) fn check(&self) -> Result<(), RequestError> {
        client::request(&self.inner.settings).map(drop)
    }

    /// Starts the dial loop; it ends when `shutdown` is cancelled.
    pub(crate) fn spawn(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(client::run(self.clone(), shutdown))
    }
}

/// Removes a request from `pending` however `authorize` ends (timeout, cancel).
struct PendingGuard<'a> {
    control: &'a Control,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.control.expire(self.id);
    }
}

/// The message as a log line, with the stream key written as `***`.
pub(crate) fn redacted(msg: &ControlMessage) -> String {
    let mut safe = msg.clone();
    if safe.param(param::STREAM_KEY).is_some() {
        safe.set_param(param::STREAM_KEY, "***");
    }
    codec::serialize(&safe).replace('\n', " | ")
}

#[cfg(test)]
mod tests;
