//! The ingest hold: when the server itself cannot keep up, the publisher's reader
//! stops reading its socket, so TCP pushes back on the publisher instead of every
//! receiver falling out of its window together.
//!
//! The rule: ingest pauses while more than a tenth of the counted receivers are
//! more than `INGEST_LEAD_MB` behind the head; a receiver alone is more than a tenth.
//! Not the median: on a saturated machine the receivers do not fall behind evenly
//! (a quarter of them can be cut while the median is still near the head, measured
//! with 100 receivers), so the hold has to start with the first tenth. A few slow or
//! stuck receivers (up to a tenth: 5 of 52) never pause it (they skip or are
//! closed, see [`super::log::overload`]). A receiver over the lead that takes nothing
//! during a whole [`STALL`] of a pause is stalled, not slow: it stops counting until
//! it takes something again, so a stuck receiver costs the publisher one [`STALL`].
//! On a stream whose laggards skip (understood, `LAGGING_RECEIVERS=skip`), one still
//! over the lead after [`OUTPACED`] of a pause is slower than the stream: it stops
//! counting until it is back within the lead (its skip brings it). Where a laggard
//! would be closed instead (an opaque stream, `close`), it keeps counting: more than
//! a tenth of the audience is held to rather than cut, as the original does.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use tokio::sync::Notify;

/// How long a pause waits for a receiver over the lead to take anything before it
/// counts as stalled.
pub(crate) const STALL: Duration = Duration::from_millis(500);
/// How long a pause waits for a receiver over the lead to come back within it: one
/// that cannot even while the publisher is held is slower than the stream (a slow
/// client, not a busy server) and stops counting until it is back within the lead.
pub(crate) const OUTPACED: Duration = Duration::from_secs(5);

/// Ingest holds while more than `1 / HOLD_ABOVE_ONE_IN` of the counted receivers are over the lead.
pub(crate) const HOLD_ABOVE_ONE_IN: usize = 10;

/// Whether more than a tenth of the receivers whose lags are given are over `lead`.
pub(crate) fn enough_behind(lags: impl IntoIterator<Item = u64>, lead: u64) -> bool {
    let (mut n, mut over) = (0usize, 0usize);
    for lag in lags {
        n += 1;
        if lag > lead {
            over += 1;
        }
    }
    over * HOLD_ABOVE_ONE_IN > n
}

/// What a broadcast's receivers and its reader share for the hold.
#[derive(Debug)]
pub(crate) struct IngestGate {
    /// Accounted bytes; 0 = never hold.
    lead: u64,
    /// The head's accounted offset, published after each append.
    head: AtomicU64,
    paused: AtomicBool,
    wake: Notify,
}

impl IngestGate {
    pub(crate) fn new(lead: u64) -> Self {
        Self {
            lead,
            head: AtomicU64::new(0),
            paused: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    pub(crate) fn lead(&self) -> u64 {
        self.lead
    }

    pub(crate) fn head(&self) -> u64 {
        self.head.load(SeqCst)
    }

    pub(crate) fn set_head(&self, acc: u64) {
        self.head.store(acc, SeqCst);
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.paused.load(SeqCst)
    }

    pub(crate) fn set_paused(&self, paused: bool) {
        self.paused.store(paused, SeqCst);
    }

    /// A receiver moved from accounted offset `before` to `after`: wakes a paused reader
    /// when it came back within the lead (the only change that can end a pause).
    pub(crate) fn advanced(&self, before: u64, after: u64) {
        if self.is_paused() {
            let head = self.head();
            if head.saturating_sub(before) > self.lead && head.saturating_sub(after) <= self.lead {
                self.wake.notify_one();
            }
        }
    }

    /// The set of receivers changed (one left, or was closed): a paused reader counts again.
    pub(crate) fn changed(&self) {
        if self.is_paused() {
            self.wake.notify_one();
        }
    }

    pub(crate) fn waker(&self) -> &Notify {
        &self.wake
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_few_never_hold_and_one_receiver_alone_does() {
        let lead = 100;
        assert!(!enough_behind([], lead));
        assert!(enough_behind([101], lead));
        assert!(!enough_behind([100], lead));
        // 50 healthy and 2 stuck: no hold; up to 5 of 52 neither; 6 of 52 hold.
        let mut lags = vec![10; 50];
        lags.extend([1 << 30, 1 << 30]);
        assert!(!enough_behind(lags.clone(), lead));
        let mut five = vec![10; 47];
        five.extend([500; 5]);
        assert!(!enough_behind(five, lead));
        let mut six = vec![10; 46];
        six.extend([500; 6]);
        assert!(enough_behind(six, lead));
        // A tenth is not more than a tenth.
        let mut one_in_ten = vec![0; 9];
        one_in_ten.push(500);
        assert!(!enough_behind(one_in_ten, lead));
        assert!(enough_behind([0, 500], lead));
    }

    proptest! {
        /// The rule is exactly "the receiver at rank n/10 from the most behind is over the lead".
        #[test]
        fn the_rule_is_the_upper_tenth(lags in prop::collection::vec(0u64..1000, 0..80), lead in 0u64..1000) {
            let mut sorted = lags.clone();
            sorted.sort_unstable_by(|a, b| b.cmp(a));
            let tenth_over = match sorted.len() {
                0 => false,
                n => sorted[n / HOLD_ABOVE_ONE_IN] > lead,
            };
            prop_assert_eq!(enough_behind(lags, lead), tenth_over);
        }
    }

    #[tokio::test]
    async fn a_paused_reader_is_woken_only_by_a_receiver_coming_back_within_the_lead() {
        let gate = IngestGate::new(100);
        gate.set_head(1000);
        gate.set_paused(true);
        let waiter = gate.waker().notified();
        tokio::pin!(waiter);
        waiter.as_mut().enable();
        gate.advanced(0, 500);
        let early = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(std::future::Future::poll(waiter.as_mut(), cx).is_ready())
        })
        .await;
        assert!(!early, "still 500 behind: no wake");
        gate.advanced(500, 950);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken when it came within the lead");
    }
}
