//! Cheap bookkeeping for the operator API and the webhook events: relaxed
//! atomics written by the one task that owns each figure (the publisher's
//! reader for a broadcast, a receiver's writer for its feed), read at request
//! time. No lock is taken on the per-chunk path.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::Kind;
use crate::media::Container;

/// Who a session is: its number and address (never its key).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Who {
    pub(crate) id: u64,
    pub(crate) ip: IpAddr,
}

impl Default for Who {
    fn default() -> Self {
        Self {
            id: 0,
            ip: Ipv4Addr::UNSPECIFIED.into(),
        }
    }
}

/// Seconds the bitrate is averaged over (whole seconds plus the current one).
pub(crate) const RATE_WINDOW_SECONDS: u64 = 10;
const SLOTS: usize = RATE_WINDOW_SECONDS as usize + 1;

/// Why a publisher's stream was closed from the server's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stopper {
    /// `POST /api/channels/{channel}/kick`.
    Operator = 1,
    /// The coordinator's STREAM-KILL.
    Coordinator = 2,
}

/// One publisher's figures, from its claim to its end.
#[derive(Debug)]
pub(crate) struct PublisherStats {
    pub(crate) who: Who,
    pub(crate) channel: String,
    created: Instant,
    activated: OnceLock<(Instant, SystemTime)>,
    chunks: AtomicU64,
    bytes: AtomicU64,
    container: AtomicU8,
    init_bytes: AtomicU64,
    stopper: AtomicU8,
    /// Bytes per second slot, and the slot's second (+1; 0 = empty).
    slot_bytes: [AtomicU64; SLOTS],
    slot_second: [AtomicU64; SLOTS],
}

impl PublisherStats {
    pub(crate) fn new(channel: &str, who: Who) -> Self {
        Self {
            who,
            channel: channel.to_owned(),
            created: Instant::now(),
            activated: OnceLock::new(),
            chunks: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            container: AtomicU8::new(0),
            init_bytes: AtomicU64::new(0),
            stopper: AtomicU8::new(0),
            slot_bytes: Default::default(),
            slot_second: Default::default(),
        }
    }

    pub(super) fn activate(&self) {
        let _ = self.activated.set((Instant::now(), SystemTime::now()));
    }

    /// When the publisher started publishing (after its upgrade).
    pub(crate) fn since(&self) -> Option<SystemTime> {
        self.activated.get().map(|(_, wall)| *wall)
    }

    /// How long it has been publishing.
    pub(crate) fn duration(&self) -> Duration {
        self.activated
            .get()
            .map_or(Duration::ZERO, |(at, _)| at.elapsed())
    }

    /// One chunk of `len` bytes arrived (publisher's task only).
    pub(super) fn chunk(&self, len: u64) {
        self.chunks.fetch_add(1, Relaxed);
        self.bytes.fetch_add(len, Relaxed);
        let second = self.created.elapsed().as_secs() + 1;
        let slot = (second % SLOTS as u64) as usize;
        if self.slot_second[slot].load(Relaxed) == second {
            self.slot_bytes[slot].fetch_add(len, Relaxed);
        } else {
            self.slot_bytes[slot].store(len, Relaxed);
            self.slot_second[slot].store(second, Relaxed);
        }
    }

    pub(super) fn media(&self, container: Container, init: Option<u64>, failed: bool) {
        let code = container_code(container);
        if self.container.load(Relaxed) != code {
            self.container.store(code, Relaxed);
        }
        if failed {
            self.init_bytes.store(0, Relaxed);
        } else if let Some(len) = init {
            self.init_bytes.store(len, Relaxed);
        }
    }

    pub(crate) fn chunks(&self) -> u64 {
        self.chunks.load(Relaxed)
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Relaxed)
    }

    pub(crate) fn init_bytes(&self) -> u64 {
        self.init_bytes.load(Relaxed)
    }

    /// Whether the scanner has decided the container (else `container` says `opaque` for now).
    pub(crate) fn container_known(&self) -> bool {
        self.container.load(Relaxed) != 0
    }

    /// `webm`, `mp4`, or `opaque` (not followed, or not decided yet).
    pub(crate) fn container(&self) -> &'static str {
        match self.container.load(Relaxed) {
            1 => "webm",
            2 => "mp4",
            _ => "opaque",
        }
    }

    /// Bits per second over the last [`RATE_WINDOW_SECONDS`] (or since the start, if younger).
    pub(crate) fn bitrate(&self) -> u64 {
        let Some((activated, _)) = self.activated.get() else {
            return 0;
        };
        let now = Instant::now();
        let second = now.duration_since(self.created).as_secs() + 1;
        let first = second.saturating_sub(RATE_WINDOW_SECONDS - 1).max(1);
        let bytes: u64 = (0..SLOTS)
            .filter(|&i| (first..=second).contains(&self.slot_second[i].load(Relaxed)))
            .map(|i| self.slot_bytes[i].load(Relaxed))
            .sum();
        let window_start = (self.created + Duration::from_secs(first - 1)).max(*activated);
        let span = now.duration_since(window_start).as_secs_f64();
        if span < 0.001 {
            return 0;
        }
        (bytes as f64 * 8.0 / span) as u64
    }

    pub(crate) fn stop_by(&self, stopper: Stopper) {
        let _ = self
            .stopper
            .compare_exchange(0, stopper as u8, Relaxed, Relaxed);
    }

    pub(crate) fn stopper(&self) -> Option<Stopper> {
        match self.stopper.load(Relaxed) {
            1 => Some(Stopper::Operator),
            2 => Some(Stopper::Coordinator),
            _ => None,
        }
    }
}

fn container_code(container: Container) -> u8 {
    match container {
        Container::WebM => 1,
        Container::Mp4 => 2,
        Container::Unknown => 0,
        Container::Opaque => 3,
    }
}

/// One receiver's figures while it plays.
#[derive(Debug)]
pub(crate) struct ReceiverStats {
    pub(crate) who: Who,
    pub(crate) kind: Kind,
    pub(crate) since: SystemTime,
    bytes_out: AtomicU64,
    /// Its next chunk in the log.
    cursor: AtomicU64,
    /// Replay bytes not yet handed to its connection.
    replay_left: AtomicU64,
    /// Accounted offset of its cursor in the log (for the ingest hold).
    position: AtomicU64,
    /// The position at which it was found stalled during an ingest hold (`u64::MAX`: never).
    stalled_at: AtomicU64,
    /// Too slow to come back within the lead even while the publisher was held.
    outpaced: AtomicBool,
    /// Its lag was reported (once, whichever of its writer or a watcher saw it first).
    kicked: AtomicBool,
    /// Its recent rate, measured by the ingest hold (only the publisher's reader takes it).
    pace: super::ingest::Pace,
}

impl ReceiverStats {
    pub(super) fn new(who: Who, kind: Kind, cursor: u64, position: u64, replay: u64) -> Self {
        Self {
            who,
            kind,
            since: SystemTime::now(),
            bytes_out: AtomicU64::new(0),
            cursor: AtomicU64::new(cursor),
            replay_left: AtomicU64::new(replay),
            position: AtomicU64::new(position),
            stalled_at: AtomicU64::new(u64::MAX),
            outpaced: AtomicBool::new(false),
            kicked: AtomicBool::new(false),
            pace: super::ingest::Pace::default(),
        }
    }

    /// How far behind `head` it is and how fast it has been taking, at `now`.
    pub(super) fn behind(&self, head: u64, now: Instant) -> super::ingest::Behind {
        let position = self.position();
        super::ingest::Behind {
            lag: head.saturating_sub(position),
            rate: self.pace.rate(now, position),
        }
    }

    /// Moves its position; returns the previous one.
    pub(super) fn move_to(&self, position: u64) -> u64 {
        self.position.swap(position, SeqCst)
    }

    pub(super) fn position(&self) -> u64 {
        self.position.load(SeqCst)
    }

    /// Whether it counts for the ingest hold: a receiver (not a probe) not being closed
    /// for falling behind, and not stalled where it stands.
    pub(super) fn holds(&self) -> bool {
        self.kind != Kind::Probe
            && !self.kicked.load(Relaxed)
            && self.stalled_at.load(Relaxed) != self.position()
            && !self.outpaced.load(Relaxed)
    }

    /// It stayed over the lead through a whole [`super::ingest::OUTPACED`] of a pause:
    /// it stops counting until it comes back within the lead.
    pub(super) fn outpace(&self) {
        self.outpaced.store(true, Relaxed);
    }

    /// It came back within the lead.
    pub(super) fn caught_up(&self) {
        self.outpaced.store(false, Relaxed);
    }

    pub(super) fn stall(&self, position: u64) {
        self.stalled_at.store(position, Relaxed);
    }

    pub(super) fn handed(&self, bytes: u64, cursor: Option<u64>, from_replay: bool) {
        self.bytes_out.fetch_add(bytes, Relaxed);
        if from_replay {
            let left = self.replay_left.load(Relaxed).saturating_sub(bytes);
            self.replay_left.store(left, Relaxed);
        }
        if let Some(cursor) = cursor {
            self.cursor.store(cursor, Relaxed);
        }
    }

    /// True the first time only: its lag is reported once.
    pub(super) fn mark_kicked(&self) -> bool {
        !self.kicked.swap(true, Relaxed)
    }

    /// Chunk bytes handed to its connection.
    pub(crate) fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Relaxed)
    }

    pub(crate) fn cursor(&self) -> u64 {
        self.cursor.load(Relaxed)
    }

    pub(crate) fn replay_left(&self) -> u64 {
        self.replay_left.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bitrate_is_the_last_ten_seconds() {
        let stats = PublisherStats::new("c", Who::default());
        stats.activate();
        assert_eq!(stats.bitrate(), 0);
        // 1,000 bytes every 100 ms (80 kbit/s) for 30 s, then twice that for 12 s.
        for rate in [1_000, 2_000] {
            let steps = if rate == 1_000 { 300 } else { 120 };
            for _ in 0..steps {
                tokio::time::advance(Duration::from_millis(100)).await;
                stats.chunk(rate);
            }
            let expected = rate as f64 * 8.0 * 10.0;
            let got = stats.bitrate() as f64;
            assert!(
                (got - expected).abs() / expected < 0.05,
                "{got} vs {expected}"
            );
        }
        // Silence: the window empties.
        tokio::time::advance(Duration::from_secs(12)).await;
        assert_eq!(stats.bitrate(), 0);
        assert_eq!(stats.chunks(), 420);
    }
}
