//! Channels: the publisher claim, waiting receivers, and each publishing
//! broadcast's chunk log.
//!
//! A publisher appends chunks to its broadcast's [`ChunkLog`] under a short lock
//! and wakes the receivers; every receiver's writer task reads from its own cursor.
//! The publisher never waits for a slow or stuck receiver; it pauses reading only
//! while more than a tenth of them are behind, or for about two seconds while one
//! far behind catches up ([`ingest`]).

pub(crate) mod feed;
pub(crate) mod ingest;
pub(crate) mod log;
pub(crate) mod stats;
mod tracker;
mod wake;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

pub(crate) use self::feed::{Feed, FeedEvent, LagWatch};
use self::ingest::IngestGate;
pub use self::log::overload::LaggingReceivers;
pub(crate) use self::log::{ChunkLog, Lagged};
pub(crate) use self::stats::{PublisherStats, ReceiverStats, Stopper, Who};
use self::tracker::MediaTracker;
use self::wake::{WakeHandle, Wakers};

/// What a streaming connection asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Publish,
    Receive,
    ReceiveClearCache,
    Probe,
    /// `GET /{channel}/{key}/play`: the stream as one HTTP body (src/play.rs).
    Play,
}

impl Kind {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "publish" => Some(Self::Publish),
            "receive" => Some(Self::Receive),
            "receive-clear-cache" => Some(Self::ReceiveClearCache),
            "probe" => Some(Self::Probe),
            "play" => Some(Self::Play),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Receive => "receive",
            Self::ReceiveClearCache => "receive-clear-cache",
            Self::Probe => "probe",
            Self::Play => "play",
        }
    }
}

/// Sizes that shape every broadcast.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HubSettings {
    pub cache_limit: u64,
    pub receiver_queue_bytes: u64,
    /// What becomes of a receiver over `receiver_queue_bytes`.
    pub lagging: LaggingReceivers,
    /// Ingest pauses while more than a tenth of the receivers are further behind than this,
    /// or one twice as far behind catches up (0 = never).
    pub ingest_lead_bytes: u64,
    /// Edge mode: a receiver of a channel without a publisher starts a pull.
    pub pull: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("channel already has a publisher")]
pub(crate) struct AlreadyPublishing;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stream key does not match the publisher's")]
pub(crate) struct InvalidKey;

/// State of one publishing broadcast, shared by the publisher and its receivers.
#[derive(Debug)]
pub(crate) struct Broadcast {
    log: Mutex<ChunkLog>,
    /// Touched only by the publisher's task; a lock keeps `Broadcast` shareable.
    media: Mutex<MediaTracker>,
    /// Woken for every burst of chunks and at the end; receivers read the state
    /// itself from the log and `ended`.
    wakers: Wakers,
    ended: AtomicBool,
    /// A pulled broadcast whose origin was lost (its receivers close with 1011).
    lost: AtomicBool,
    stats: Arc<PublisherStats>,
    events: Option<Arc<crate::webhook::Webhook>>,
    /// The receivers playing it, for the operator API (each removes itself when it ends).
    receivers: Mutex<HashMap<u64, Arc<ReceiverStats>>>,
    ingest: IngestGate,
    lagging: LaggingReceivers,
    /// Where skips are counted (`None` in unit tests).
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl Broadcast {
    fn new(
        settings: HubSettings,
        stats: Arc<PublisherStats>,
        events: Option<Arc<crate::webhook::Webhook>>,
        metrics: Option<Arc<crate::metrics::Metrics>>,
    ) -> Self {
        stats.activate();
        Self {
            metrics,
            stats,
            events,
            receivers: Mutex::new(HashMap::new()),
            log: Mutex::new(ChunkLog::new(
                settings.cache_limit,
                settings.receiver_queue_bytes,
            )),
            media: Mutex::new(MediaTracker::new()),
            wakers: Wakers::default(),
            ended: AtomicBool::new(false),
            lost: AtomicBool::new(false),
            ingest: IngestGate::new(settings.ingest_lead_bytes),
            lagging: settings.lagging,
        }
    }

    pub(crate) fn ingest(&self) -> &IngestGate {
        &self.ingest
    }

    pub(crate) fn lagging(&self) -> LaggingReceivers {
        self.lagging
    }

    /// Waits while more than a tenth of the live receivers are more than the ingest lead behind, or
    /// one far behind keeps pace (see [`ingest`]); returns how long it held the publisher, if it did.
    pub(crate) async fn hold(&self) -> Option<std::time::Duration> {
        let lead = self.ingest.lead();
        if lead == 0 {
            return None;
        }
        let mut since = None;
        let mut snapshot = HashMap::new();
        let mut deadline = tokio::time::Instant::now();
        loop {
            let notified = self.ingest.waker().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.must_hold(lead) {
                break;
            }
            if since.is_none() {
                // Count again once receivers see the pause: none comes back unnoticed.
                let now = tokio::time::Instant::now();
                since = Some(now);
                deadline = now + ingest::STALL;
                snapshot = self.positions();
                self.ingest.set_paused(true);
                continue;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                self.mark_stalled(&snapshot, lead);
                if since.is_some_and(|s| s.elapsed() >= ingest::OUTPACED) && self.may_skip() {
                    self.mark_outpaced(lead);
                }
                snapshot = self.positions();
                deadline = tokio::time::Instant::now() + ingest::STALL;
            }
        }
        self.ingest.set_paused(false);
        since.map(|s| s.elapsed())
    }

    fn must_hold(&self, lead: u64) -> bool {
        let head = self.ingest.head();
        let now = tokio::time::Instant::now();
        let receivers = self.receiver_map();
        let counted = receivers
            .values()
            .filter(|r| r.holds())
            .map(|r| r.behind(head, now));
        ingest::must_hold(counted, lead, self.ingest.rate(now))
    }

    fn positions(&self) -> HashMap<u64, u64> {
        let receivers = self.receiver_map();
        receivers.iter().map(|(k, r)| (*k, r.position())).collect()
    }

    /// Receivers over the lead that took nothing since `snapshot` stop counting.
    fn mark_stalled(&self, snapshot: &HashMap<u64, u64>, lead: u64) {
        let head = self.ingest.head();
        let receivers = self.receiver_map();
        for (key, receiver) in receivers.iter() {
            let position = receiver.position();
            if head.saturating_sub(position) > lead && snapshot.get(key) == Some(&position) {
                tracing::debug!(target: "request", channel = %self.stats.channel, id = receiver.who.id, "receiver stalled during an ingest hold; it no longer holds the publisher");
                receiver.stall(position);
            }
        }
    }

    /// Whether its laggards skip (an understood stream, `LAGGING_RECEIVERS=skip`)
    /// rather than being closed.
    fn may_skip(&self) -> bool {
        self.lagging == LaggingReceivers::Skip && matches!(self.stats.container(), "webm" | "mp4")
    }

    /// Receivers still over the lead after [`ingest::OUTPACED`] of a pause stop counting
    /// until they are back within it.
    fn mark_outpaced(&self, lead: u64) {
        let head = self.ingest.head();
        let receivers = self.receiver_map();
        for receiver in receivers.values() {
            if receiver.holds() && head.saturating_sub(receiver.position()) > lead {
                tracing::debug!(target: "request", channel = %self.stats.channel, id = receiver.who.id, "receiver slower than the stream during an ingest hold; it no longer holds the publisher");
                receiver.outpace();
            }
        }
    }

    pub(crate) fn log(&self) -> MutexGuard<'_, ChunkLog> {
        // Every ChunkLog method leaves it consistent, so a poisoned lock is still usable.
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends a chunk for every receiver (never waits for them) and wakes them.
    #[cfg(test)]
    pub(crate) fn push(&self, chunk: Bytes) {
        self.append(chunk);
        self.wake_receivers();
    }

    /// Appends a chunk without waking the receivers yet (see [`Broadcast::wake_receivers`]).
    pub(crate) fn append(&self, chunk: Bytes) {
        let (update, container) = {
            let mut media = self.media.lock().unwrap_or_else(PoisonError::into_inner);
            let update = media.observe(&chunk);
            (update, media.container())
        };
        let init = update.init.as_ref().map(|i| i.len() as u64);
        self.stats.chunk(chunk.len() as u64);
        self.stats.media(container, init, update.failed);
        let mut log = self.log();
        log.push(chunk, update);
        self.ingest.set_head(log.head_acc());
    }

    /// The publisher's figures.
    pub(crate) fn stats(&self) -> &Arc<PublisherStats> {
        &self.stats
    }

    /// The receivers playing it now.
    pub(crate) fn receivers(&self) -> Vec<Arc<ReceiverStats>> {
        self.receiver_map().values().cloned().collect()
    }

    fn receiver_map(&self) -> MutexGuard<'_, HashMap<u64, Arc<ReceiverStats>>> {
        self.receivers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn add_receiver(&self, key: u64, stats: Arc<ReceiverStats>) {
        self.receiver_map().insert(key, stats);
    }

    pub(crate) fn remove_receiver(&self, key: u64) {
        self.receiver_map().remove(&key);
    }

    /// Reports a receiver over its bound moved to the newest join point.
    pub(crate) fn skipped(&self, receiver: &ReceiverStats, behind_bytes: u64, skipped_bytes: u64) {
        if let Some(metrics) = &self.metrics {
            metrics.receivers_skipped.inc();
            metrics.skipped_bytes.inc_by(skipped_bytes);
        }
        tracing::info!(target: "request", channel = %self.stats.channel, session = receiver.who.id, behind_bytes, skipped_bytes, "receiver too slow: over its queue bound, skipped to the newest join point");
    }

    /// A planned skip moved further ahead before it was handed out: `bytes` more skipped.
    pub(crate) fn skipped_more(&self, bytes: u64) {
        if let Some(metrics) = &self.metrics {
            metrics.skipped_bytes.inc_by(bytes);
        }
    }

    /// Reports a receiver closed for falling behind.
    pub(crate) fn kicked(&self, receiver: &ReceiverStats, behind_bytes: u64) {
        // It no longer holds the publisher.
        self.ingest.changed();
        if let Some(events) = &self.events {
            events.emit(crate::webhook::Event::ReceiverKicked {
                time: crate::webhook::now(),
                channel: self.stats.channel.clone(),
                id: receiver.who.id,
                ip: crate::webhook::ip(receiver.who.ip),
                kind: receiver.kind.as_str(),
                behind_bytes,
            });
        }
    }

    /// How far a receiver at `cursor` is behind the head (accounted bytes).
    pub(crate) fn behind(&self, cursor: u64) -> u64 {
        match self.log().check_lag(cursor) {
            Ok(behind) => behind,
            Err(lagged) => lagged.behind_bytes,
        }
    }

    /// Wakes every receiver to send what was appended.
    pub(crate) fn wake_receivers(&self) {
        self.wakers.wake_all();
    }

    fn end(&self) {
        self.ended.store(true, Ordering::Release);
        self.wakers.wake_all();
    }

    /// Bytes held by the cache (overhead included).
    pub(crate) fn cache_bytes(&self) -> u64 {
        self.log().cache_bytes()
    }

    /// Starts a receiver of `kind` on this running broadcast (cache replay, then live).
    fn feed(self: &Arc<Self>, kind: Kind, who: Who) -> Feed {
        let (start, position) = {
            let mut log = self.log();
            let start = match kind {
                Kind::Play => log.start_at_edge(),
                _ => log.start(kind == Kind::Probe),
            };
            if kind == Kind::ReceiveClearCache {
                log.clear_history();
            }
            let position = log.acc_of(start.cursor);
            (start, position)
        };
        Feed::new(self.clone(), start, position, kind, who)
    }

    /// Starts a receiver that was waiting before the broadcast's first chunk.
    fn feed_from_start(self: &Arc<Self>, kind: Kind, who: Who) -> Feed {
        Feed::new(self.clone(), log::Start::default(), 0, kind, who)
    }

    /// Whether the publisher is gone (no chunk will follow).
    pub(crate) fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Marks a pulled broadcast's end as the loss of its origin; set before it ends.
    pub(crate) fn mark_lost(&self) {
        self.lost.store(true, Ordering::Release);
    }

    /// Whether the broadcast ended because its origin was lost.
    pub(crate) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// Local receivers playing it.
    pub(crate) fn receiver_count(&self) -> usize {
        self.receiver_map().len()
    }

    pub(crate) fn register(&self) -> WakeHandle {
        self.wakers.register()
    }

    pub(crate) fn wakers(&self) -> &Wakers {
        &self.wakers
    }
}

/// The hub: every channel with a publisher or waiting receivers.
#[derive(Debug)]
pub(crate) struct Hub {
    settings: HubSettings,
    /// Where events go (`EVENT_WEBHOOK_URL`).
    events: Option<Arc<crate::webhook::Webhook>>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    channels: Mutex<HashMap<String, Channel>>,
    next_id: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Default)]
struct Channel {
    publisher: Option<Publisher>,
    /// Publish requests the coordinator is still deciding.
    candidates: usize,
    waiting: Vec<Waiter>,
}

#[derive(Debug)]
struct Publisher {
    claim_id: u64,
    key: String,
    stream_id: Option<String>,
    broadcast: Option<Arc<Broadcast>>,
    kill: CancellationToken,
    stats: Arc<PublisherStats>,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    key: String,
    kind: Kind,
    who: Who,
    start: oneshot::Sender<Result<Feed, InvalidKey>>,
}

impl Hub {
    #[cfg(test)]
    pub(crate) fn new(settings: HubSettings) -> Arc<Self> {
        Self::with_events(settings, None, None)
    }

    /// A hub whose receivers report being kicked to `events` and count skips in `metrics`.
    pub(crate) fn with_events(
        settings: HubSettings,
        events: Option<Arc<crate::webhook::Webhook>>,
        metrics: Option<Arc<crate::metrics::Metrics>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            settings,
            events,
            metrics,
            channels: Mutex::new(HashMap::new()),
            next_id: std::sync::atomic::AtomicU64::new(1),
        })
    }

    fn channels(&self) -> MutexGuard<'_, HashMap<String, Channel>> {
        // Each critical section leaves the map consistent; a poisoned lock is still usable.
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn id(&self) -> u64 {
        self.next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    #[cfg(test)]
    pub(crate) fn claim(
        self: &Arc<Self>,
        channel: &str,
        key: &str,
    ) -> Result<PublisherClaim, AlreadyPublishing> {
        self.claim_as(channel, key, Who::default())
    }

    /// Atomically claims `channel` for publisher `who`; the claim is released when dropped.
    pub(crate) fn claim_as(
        self: &Arc<Self>,
        channel: &str,
        key: &str,
        who: Who,
    ) -> Result<PublisherClaim, AlreadyPublishing> {
        let mut channels = self.channels();
        let entry = channels.entry(channel.to_owned()).or_default();
        if entry.publisher.is_some() {
            return Err(AlreadyPublishing);
        }
        Ok(self.claim_in(entry, channel, key, who))
    }

    /// Claims a channel entry that has no publisher (the caller holds the lock).
    fn claim_in(
        self: &Arc<Self>,
        entry: &mut Channel,
        channel: &str,
        key: &str,
        who: Who,
    ) -> PublisherClaim {
        let claim_id = self.id();
        let stats = Arc::new(PublisherStats::new(channel, who));
        let kill = CancellationToken::new();
        entry.publisher = Some(Publisher {
            claim_id,
            key: key.to_owned(),
            stream_id: None,
            broadcast: None,
            kill: kill.clone(),
            stats: stats.clone(),
        });
        PublisherClaim {
            hub: self.clone(),
            channel: channel.to_owned(),
            claim_id,
            kill,
            stats,
        }
    }

    /// Registers a publish request the coordinator has yet to decide. Several
    /// may wait at once (up to [`MAX_CANDIDATES`]), so a request nobody answers
    /// cannot lock the channel; the first one accepted claims it
    /// ([`Candidate::claim`]). Refused while the channel has a publisher.
    pub(crate) fn candidate(
        self: &Arc<Self>,
        channel: &str,
    ) -> Result<Candidate, AlreadyPublishing> {
        let mut channels = self.channels();
        let entry = channels.entry(channel.to_owned()).or_default();
        if entry.publisher.is_some() || entry.candidates >= MAX_CANDIDATES {
            Self::remove_if_empty(&mut channels, channel);
            return Err(AlreadyPublishing);
        }
        entry.candidates += 1;
        Ok(Candidate {
            hub: self.clone(),
            channel: channel.to_owned(),
        })
    }

    #[cfg(test)]
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        channel: &str,
        key: &str,
        kind: Kind,
    ) -> Subscription {
        self.subscribe_as(channel, key, kind, Who::default())
    }

    /// Starts receiver `who` now if a publisher is active, else registers it as waiting.
    #[cfg(test)]
    pub(crate) fn subscribe_as(
        self: &Arc<Self>,
        channel: &str,
        key: &str,
        kind: Kind,
        who: Who,
    ) -> Subscription {
        self.subscribe_or_pull(channel, key, kind, who).0
    }

    /// As [`Hub::subscribe_as`]; in edge mode a channel without a publisher is
    /// also claimed for a pull with this receiver's key, and the claim returned
    /// for the caller to start the pull (one per channel, decided under the lock).
    pub(crate) fn subscribe_or_pull(
        self: &Arc<Self>,
        channel: &str,
        key: &str,
        kind: Kind,
        who: Who,
    ) -> (Subscription, Option<PublisherClaim>) {
        let mut channels = self.channels();
        let entry = channels.entry(channel.to_owned()).or_default();
        if let Some(publisher) = &entry.publisher {
            if let Some(broadcast) = &publisher.broadcast {
                if !keys_match(&publisher.key, key) {
                    return (Subscription::Ready(Err(InvalidKey)), None);
                }
                return (Subscription::Ready(Ok(broadcast.feed(kind, who))), None);
            }
        }
        let pull = (self.settings.pull && entry.publisher.is_none() && entry.candidates == 0)
            .then(|| self.claim_in(entry, channel, key, Who::default()));
        (
            Subscription::Waiting(self.wait_in(entry, channel, key, kind, who)),
            pull,
        )
    }

    fn wait_in(
        self: &Arc<Self>,
        entry: &mut Channel,
        channel: &str,
        key: &str,
        kind: Kind,
        who: Who,
    ) -> WaitTicket {
        let (tx, rx) = oneshot::channel();
        let id = self.id();
        entry.waiting.push(Waiter {
            id,
            key: key.to_owned(),
            kind,
            who,
            start: tx,
        });
        WaitTicket {
            hub: self.clone(),
            channel: channel.to_owned(),
            id,
            start: rx,
        }
    }

    /// Local receivers of `channel`: waiting, plus playing its broadcast.
    pub(crate) fn audience(&self, channel: &str) -> usize {
        let channels = self.channels();
        let Some(entry) = channels.get(channel) else {
            return 0;
        };
        let playing = entry
            .publisher
            .as_ref()
            .and_then(|p| p.broadcast.as_ref())
            .map_or(0, |b| b.receiver_count());
        entry.waiting.len() + playing
    }

    /// A new pull for `channel` when it has no publisher but receivers still wait
    /// (with the key of the first of them); `None` otherwise.
    pub(crate) fn pull_for_waiters(
        self: &Arc<Self>,
        channel: &str,
    ) -> Option<(PublisherClaim, String)> {
        let mut channels = self.channels();
        let entry = channels.get_mut(channel)?;
        if entry.publisher.is_some() {
            return None;
        }
        let key = entry.waiting.first()?.key.clone();
        let claim = self.claim_in(entry, channel, &key, Who::default());
        Some((claim, key))
    }

    /// Closes the publisher of `channel` if its stream id matches (`None` = any id).
    pub(crate) fn kill(&self, channel: &str, stream_id: Option<&str>) -> bool {
        let channels = self.channels();
        let Some(publisher) = channels.get(channel).and_then(|c| c.publisher.as_ref()) else {
            return false;
        };
        let matches = match stream_id {
            None => true,
            Some(id) => publisher.stream_id.as_deref() == Some(id),
        };
        if matches {
            publisher.stats.stop_by(Stopper::Coordinator);
            publisher.kill.cancel();
        }
        matches
    }

    /// Closes the publisher of `channel` for the operator (`false`: none).
    pub(crate) fn kick(&self, channel: &str) -> bool {
        let channels = self.channels();
        let Some(publisher) = channels.get(channel).and_then(|c| c.publisher.as_ref()) else {
            return false;
        };
        publisher.stats.stop_by(Stopper::Operator);
        publisher.kill.cancel();
        true
    }

    /// The active broadcasts, by channel name (of one channel when given).
    pub(crate) fn broadcasts(&self, only: Option<&str>) -> Vec<(String, Arc<Broadcast>)> {
        let channels = self.channels();
        let active = |(name, c): (&String, &Channel)| {
            let broadcast = c.publisher.as_ref()?.broadcast.clone()?;
            Some((name.clone(), broadcast))
        };
        match only {
            Some(name) => channels
                .get_key_value(name)
                .and_then(active)
                .into_iter()
                .collect(),
            None => channels.iter().filter_map(active).collect(),
        }
    }

    /// Closes every active publisher, and every accepted one still finishing its upgrade.
    pub(crate) fn kill_all(&self) -> usize {
        let channels = self.channels();
        let mut killed = 0;
        for publisher in channels.values().filter_map(|c| c.publisher.as_ref()) {
            if publisher.broadcast.is_some() || publisher.stream_id.is_some() {
                publisher.stats.stop_by(Stopper::Coordinator);
                publisher.kill.cancel();
                killed += 1;
            }
        }
        killed
    }

    /// Channels with an active publisher.
    pub(crate) fn active_channels(&self) -> usize {
        let channels = self.channels();
        channels
            .values()
            .filter(|c| c.publisher.as_ref().is_some_and(|p| p.broadcast.is_some()))
            .count()
    }

    /// Bytes held by the caches of every active broadcast.
    pub(crate) fn cache_bytes(&self) -> u64 {
        let broadcasts: Vec<Arc<Broadcast>> = self
            .channels()
            .values()
            .filter_map(|c| c.publisher.as_ref().and_then(|p| p.broadcast.clone()))
            .collect();
        broadcasts.iter().map(|s| s.cache_bytes()).sum()
    }

    /// Whether `channel` is claimed by a publisher (active or still being admitted).
    pub(crate) fn has_publisher(&self, channel: &str) -> bool {
        self.channels()
            .get(channel)
            .is_some_and(|c| c.publisher.is_some())
    }

    /// Number of map entries (channels with a publisher or waiting receivers).
    pub(crate) fn channel_entries(&self) -> usize {
        self.channels().len()
    }

    fn remove_if_empty(channels: &mut HashMap<String, Channel>, channel: &str) {
        if channels
            .get(channel)
            .is_some_and(|c| c.publisher.is_none() && c.candidates == 0 && c.waiting.is_empty())
        {
            channels.remove(channel);
        }
    }
}

fn keys_match(expected: &str, given: &str) -> bool {
    bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// Publish requests of one channel that may wait for the coordinator at once.
pub(crate) const MAX_CANDIDATES: usize = 8;

/// A publish request waiting for the coordinator; leaves the channel's count when dropped.
#[derive(Debug)]
pub(crate) struct Candidate {
    hub: Arc<Hub>,
    channel: String,
}

impl Candidate {
    /// The coordinator accepted it: claims the channel, unless another accepted
    /// request claimed it first.
    pub(crate) fn claim(self, key: &str, who: Who) -> Result<PublisherClaim, AlreadyPublishing> {
        // `self` is dropped only after the claim exists, so the entry never goes away between.
        self.hub.claim_as(&self.channel, key, who)
    }
}

impl Drop for Candidate {
    fn drop(&mut self) {
        let mut channels = self.hub.channels();
        if let Some(entry) = channels.get_mut(&self.channel) {
            entry.candidates = entry.candidates.saturating_sub(1);
        }
        Hub::remove_if_empty(&mut channels, &self.channel);
    }
}

/// A channel claimed by one publisher. Dropping it ends the broadcast and frees the channel.
#[derive(Debug)]
pub(crate) struct PublisherClaim {
    hub: Arc<Hub>,
    channel: String,
    claim_id: u64,
    kill: CancellationToken,
    stats: Arc<PublisherStats>,
}

impl PublisherClaim {
    /// The publisher's figures (chunks, bytes, what stopped it).
    pub(crate) fn stats(&self) -> Arc<PublisherStats> {
        self.stats.clone()
    }

    /// Cancelled when the coordinator kills this stream.
    pub(crate) fn kill_token(&self) -> CancellationToken {
        self.kill.clone()
    }

    /// Records the coordinator's stream id as soon as it is known, so kills reach it
    /// even before the upgrade completes.
    pub(crate) fn set_stream_id(&self, stream_id: &str) {
        let mut channels = self.hub.channels();
        let publisher = channels
            .get_mut(&self.channel)
            .and_then(|c| c.publisher.as_mut())
            .filter(|p| p.claim_id == self.claim_id);
        if let Some(publisher) = publisher {
            publisher.stream_id = Some(stream_id.to_owned());
        }
    }

    /// The origin refused this pull's key: every receiver waiting with it is refused too.
    pub(crate) fn refuse_waiters(&self, key: &str) {
        let mut channels = self.hub.channels();
        let Some(entry) = channels.get_mut(&self.channel) else {
            return;
        };
        let (refused, kept) = entry
            .waiting
            .drain(..)
            .partition(|w: &Waiter| keys_match(key, &w.key));
        entry.waiting = kept;
        for waiter in refused {
            // A waiter that already left dropped its receiver; nothing to do then.
            let _ = waiter.start.send(Err(InvalidKey));
        }
    }

    /// Frees the channel if nobody waits for or plays it (checked and done under
    /// the hub's lock, so a receiver arriving meanwhile starts a new pull instead
    /// of waiting for a released one); true when released.
    pub(crate) fn release_if_idle(&self) -> bool {
        let mut channels = self.hub.channels();
        let Some(entry) = channels.get_mut(&self.channel) else {
            return true;
        };
        let Some(publisher) = entry
            .publisher
            .as_ref()
            .filter(|p| p.claim_id == self.claim_id)
        else {
            return true;
        };
        let playing = publisher
            .broadcast
            .as_ref()
            .map_or(0, |b| b.receiver_count());
        if playing > 0 || !entry.waiting.is_empty() {
            return false;
        }
        if let Some(broadcast) = entry.publisher.take().and_then(|p| p.broadcast) {
            broadcast.end();
        }
        Hub::remove_if_empty(&mut channels, &self.channel);
        true
    }

    /// Opens the publishing broadcast: waiting receivers with the right key start from its first chunk.
    pub(crate) fn activate(&self, stream_id: Option<String>) -> Arc<Broadcast> {
        let broadcast = Arc::new(Broadcast::new(
            self.hub.settings,
            self.stats.clone(),
            self.hub.events.clone(),
            self.hub.metrics.clone(),
        ));
        let mut channels = self.hub.channels();
        let Some(entry) = channels.get_mut(&self.channel) else {
            return broadcast;
        };
        let Some(publisher) = entry
            .publisher
            .as_mut()
            .filter(|p| p.claim_id == self.claim_id)
        else {
            return broadcast;
        };
        publisher.broadcast = Some(broadcast.clone());
        if stream_id.is_some() {
            publisher.stream_id = stream_id;
        }
        let key = publisher.key.clone();
        for waiter in entry.waiting.drain(..) {
            let start = if keys_match(&key, &waiter.key) {
                Ok(broadcast.feed_from_start(waiter.kind, waiter.who))
            } else {
                Err(InvalidKey)
            };
            // A waiter that already left dropped its receiver; nothing to do then.
            let _ = waiter.start.send(start);
        }
        broadcast
    }
}

impl Drop for PublisherClaim {
    fn drop(&mut self) {
        let mut channels = self.hub.channels();
        let Some(entry) = channels.get_mut(&self.channel) else {
            return;
        };
        if entry
            .publisher
            .as_ref()
            .is_some_and(|p| p.claim_id == self.claim_id)
        {
            if let Some(publisher) = entry.publisher.take() {
                if let Some(broadcast) = publisher.broadcast {
                    broadcast.end();
                }
            }
        }
        Hub::remove_if_empty(&mut channels, &self.channel);
    }
}

/// How a receiver starts.
#[derive(Debug)]
pub(crate) enum Subscription {
    Ready(Result<Feed, InvalidKey>),
    Waiting(WaitTicket),
}

/// A receiver waiting for a publisher; leaves the waiting list when dropped.
#[derive(Debug)]
pub(crate) struct WaitTicket {
    hub: Arc<Hub>,
    channel: String,
    id: u64,
    start: oneshot::Receiver<Result<Feed, InvalidKey>>,
}

impl WaitTicket {
    /// Resolves when a publisher arrives (cancel-safe).
    pub(crate) async fn started(&mut self) -> Result<Feed, InvalidKey> {
        // The sender lives in the hub until it is used, so a closed channel cannot happen
        // while this ticket exists; treat it as a refusal to be safe.
        (&mut self.start).await.unwrap_or(Err(InvalidKey))
    }
}

impl Drop for WaitTicket {
    fn drop(&mut self) {
        let mut channels = self.hub.channels();
        if let Some(entry) = channels.get_mut(&self.channel) {
            entry.waiting.retain(|w| w.id != self.id);
        }
        Hub::remove_if_empty(&mut channels, &self.channel);
    }
}

#[cfg(test)]
mod tests;
