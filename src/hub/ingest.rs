//! The ingest hold: when the server itself cannot keep up, the publisher's reader
//! stops reading its socket, so TCP pushes back on the publisher instead of every
//! receiver falling out of its window together.
//!
//! Two rules, either one holds:
//! - **The crowd.** More than a tenth of the counted receivers are more than
//!   `INGEST_LEAD_MB` behind the head; a receiver alone is more than a tenth. Not
//!   the median: on a saturated machine the receivers do not fall behind evenly (a
//!   quarter of them can be cut while the median is still near the head, measured
//!   with 100 receivers), so the hold has to start with the first tenth.
//! - **The one that keeps pace.** A counted receiver more than [`FAR_LEADS`] leads
//!   behind whose recent rate ([`Pace`]) is at least [`KEEPS_PACE`] of the
//!   publisher's and would bring it back within the lead in [`CATCH_UP`]. It is
//!   behind because the machine is busy (it takes about what the others take),
//!   not because it is slow: without this rule the few of a crowd that fall
//!   furthest drift out of their window one by one (measured with 100 receivers:
//!   one cut in 2 runs of 7 with `GOP_CACHE_SIZE_MB=0`). A stuck receiver takes
//!   nothing, and one slower than the stream qualifies only if it takes at least
//!   three quarters of it and at least `(FAR_LEADS - 1) × lead / CATCH_UP` (1 MB/s
//!   at the default 2 MB lead: only streams over about 8 Mbit/s); the pause it
//!   causes ends within about [`CATCH_UP`], as it comes back within the far mark.
//!
//! So a few slow or stuck receivers (up to a tenth: 5 of 52) never pause ingest
//! (they skip or are closed, see [`super::log::overload`]). A receiver over the
//! lead that takes nothing during a whole [`STALL`] of a pause is stalled, not slow:
//! it stops counting until it takes something again, so a stuck receiver that is
//! more than a tenth costs the publisher one [`STALL`]. On a stream whose laggards
//! skip (understood, `LAGGING_RECEIVERS=skip`), one still over the lead after
//! [`OUTPACED`] of a pause is slower than the stream: it stops counting until it
//! is back within the lead (its skip brings it). Where a laggard would be closed
//! instead (an opaque stream, `close`), it keeps counting: more than a tenth of
//! the audience is held to rather than cut, as the original does.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a pause waits for a receiver over the lead to take anything before it
/// counts as stalled.
pub(crate) const STALL: Duration = Duration::from_millis(500);
/// How long a pause waits for a receiver over the lead to come back within it: one
/// that cannot even while the publisher is held is slower than the stream (a slow
/// client, not a busy server) and stops counting until it is back within the lead.
pub(crate) const OUTPACED: Duration = Duration::from_secs(5);

/// Ingest holds while more than `1 / HOLD_ABOVE_ONE_IN` of the counted receivers are over the lead.
pub(crate) const HOLD_ABOVE_ONE_IN: usize = 10;
/// A receiver holds the publisher on its own only when more than this many leads behind...
pub(crate) const FAR_LEADS: u64 = 2;
/// ...and fast enough to be back within the lead in this long at its recent rate...
pub(crate) const CATCH_UP: Duration = Duration::from_secs(2);
/// ...taking at least this fraction (numerator, denominator) of the publisher's rate.
pub(crate) const KEEPS_PACE: (u128, u128) = (3, 4);
/// A receiver's rate is what it took over the last one to two of these.
pub(crate) const RATE_WINDOW: Duration = Duration::from_millis(500);

/// One counted receiver as the hold sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Behind {
    /// Accounted bytes behind the head.
    pub(crate) lag: u64,
    /// Accounted bytes per second it took recently ([`Pace`]).
    pub(crate) rate: u64,
}

/// Whether ingest holds for these receivers: more than a tenth over `lead`, or any
/// one keeping pace far behind while the publisher brings `ingest_rate` bytes a
/// second (see the module).
pub(crate) fn must_hold(
    receivers: impl IntoIterator<Item = Behind>,
    lead: u64,
    ingest_rate: u64,
) -> bool {
    let (mut n, mut over) = (0usize, 0usize);
    for r in receivers {
        if keeps_pace_far_behind(r, lead, ingest_rate) {
            return true;
        }
        n += 1;
        if r.lag > lead {
            over += 1;
        }
    }
    over * HOLD_ABOVE_ONE_IN > n
}

/// More than [`FAR_LEADS`] leads behind, taking at least [`KEEPS_PACE`] of what the
/// publisher brings (`ingest_rate`), and back within the lead in [`CATCH_UP`] at its rate.
pub(crate) fn keeps_pace_far_behind(r: Behind, lead: u64, ingest_rate: u64) -> bool {
    let excess = r.lag.saturating_sub(lead) as u128;
    let (num, den) = KEEPS_PACE;
    r.lag > lead.saturating_mul(FAR_LEADS)
        && u128::from(r.rate) * den >= u128::from(ingest_rate) * num
        && excess * 1000 <= u128::from(r.rate) * CATCH_UP.as_millis()
}

/// A recent rate (a receiver's, or its publisher's): what was taken since a mark one
/// to two [`RATE_WINDOW`]s old (two marks, so the measure never starts from an empty
/// window). Only the publisher's reader (the hold) measures it; the lock makes it
/// shareable.
#[derive(Debug, Default)]
pub(crate) struct Pace {
    marks: Mutex<Marks>,
}

#[derive(Debug, Default)]
struct Marks {
    older: Option<(Instant, u64)>,
    newer: Option<(Instant, u64)>,
}

impl Pace {
    /// The rate in bytes per second at `now`, standing at `position`; 0 until a window has passed.
    pub(crate) fn rate(&self, now: Instant, position: u64) -> u64 {
        // Every update below is one assignment: a panic cannot leave the marks inconsistent.
        let mut marks = self.marks.lock().unwrap_or_else(PoisonError::into_inner);
        match marks.newer {
            None => {
                marks.older = Some((now, position));
                marks.newer = Some((now, position));
            }
            Some((at, _)) if now.saturating_duration_since(at) >= RATE_WINDOW => {
                marks.older = marks.newer;
                marks.newer = Some((now, position));
            }
            Some(_) => {}
        }
        let Some((at, from)) = marks.older else {
            return 0;
        };
        let span = now.saturating_duration_since(at);
        if span < RATE_WINDOW {
            return 0;
        }
        let bytes = position.saturating_sub(from) as u128;
        (bytes * 1_000_000 / span.as_micros().max(1)).min(u64::MAX as u128) as u64
    }
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
    /// The publisher's recent rate.
    pace: Pace,
}

impl IngestGate {
    pub(crate) fn new(lead: u64) -> Self {
        Self {
            lead,
            head: AtomicU64::new(0),
            paused: AtomicBool::new(false),
            wake: Notify::new(),
            pace: Pace::default(),
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

    /// What the publisher brought a second recently ([`Pace`]), at `now`.
    pub(crate) fn rate(&self, now: Instant) -> u64 {
        self.pace.rate(now, self.head())
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.paused.load(SeqCst)
    }

    pub(crate) fn set_paused(&self, paused: bool) {
        self.paused.store(paused, SeqCst);
    }

    /// A receiver moved from accounted offset `before` to `after`: wakes a paused reader
    /// when it came back within the lead or within the far mark (the only moves that
    /// can end a pause).
    pub(crate) fn advanced(&self, before: u64, after: u64) {
        if self.is_paused() {
            let head = self.head();
            let (was, is) = (head.saturating_sub(before), head.saturating_sub(after));
            let far = self.lead.saturating_mul(FAR_LEADS);
            if (was > self.lead && is <= self.lead) || (was > far && is <= far) {
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

    /// Receivers that are all slow (rate 0): only the crowd rule can hold.
    fn slow(lags: impl IntoIterator<Item = u64>) -> Vec<Behind> {
        lags.into_iter()
            .map(|lag| Behind { lag, rate: 0 })
            .collect()
    }

    #[test]
    fn a_few_never_hold_and_one_receiver_alone_does() {
        let lead = 100;
        assert!(!must_hold(slow([]), lead, 0));
        assert!(must_hold(slow([101]), lead, 0));
        assert!(!must_hold(slow([100]), lead, 0));
        // 50 healthy and 2 stuck: no hold; up to 5 of 52 neither; 6 of 52 hold.
        let mut lags = vec![10; 50];
        lags.extend([1 << 30, 1 << 30]);
        assert!(!must_hold(slow(lags.clone()), lead, 0));
        let mut five = vec![10; 47];
        five.extend([500; 5]);
        assert!(!must_hold(slow(five), lead, 0));
        let mut six = vec![10; 46];
        six.extend([500; 6]);
        assert!(must_hold(slow(six), lead, 0));
        // A tenth is not more than a tenth.
        let mut one_in_ten = vec![0; 9];
        one_in_ten.push(500);
        assert!(!must_hold(slow(one_in_ten), lead, 0));
        assert!(must_hold(slow([0, 500]), lead, 0));
    }

    #[test]
    fn one_far_behind_holds_only_while_it_keeps_pace() {
        let lead = 1000;
        let ingest = 1000;
        let mut crowd = vec![
            Behind {
                lag: 10,
                rate: 5000
            };
            51
        ];
        // 5,000 behind, taking 2,000 a second: back within the lead in two seconds.
        crowd.push(Behind {
            lag: 5000,
            rate: 2000,
        });
        assert_eq!(CATCH_UP, Duration::from_secs(2));
        assert!(must_hold(crowd.clone(), lead, ingest));
        // A little slower: it would take longer than CATCH_UP.
        crowd.last_mut().unwrap().rate = 1999;
        assert!(!must_hold(crowd.clone(), lead, ingest));
        // Fast enough to catch up, and three quarters of what the publisher brings...
        crowd.last_mut().unwrap().rate = 2000;
        assert!(must_hold(crowd.clone(), lead, 2666));
        // ...but not less: a slow client.
        assert!(!must_hold(crowd.clone(), lead, 2667));
        // Stuck (rate 0) far behind: never, not even while the publisher is held.
        crowd.last_mut().unwrap().rate = 0;
        crowd.last_mut().unwrap().lag = 1 << 30;
        assert!(!must_hold(crowd.clone(), lead, 0));
        // Fast but not far: the crowd rule alone decides.
        crowd.last_mut().unwrap().rate = u64::MAX;
        crowd.last_mut().unwrap().lag = FAR_LEADS * lead;
        assert!(!must_hold(crowd, lead, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn the_pace_is_what_was_taken_over_the_last_window_or_two() {
        let pace = Pace::default();
        let t0 = Instant::now();
        assert_eq!(pace.rate(t0, 0), 0, "no window has passed");
        assert_eq!(pace.rate(t0 + RATE_WINDOW / 2, 500), 0);
        // 1,000 bytes in one window: 2,000 a second.
        assert_eq!(pace.rate(t0 + RATE_WINDOW, 1000), 2000);
        // Then nothing for a window: measured from the previous mark, still moving...
        assert_eq!(pace.rate(t0 + RATE_WINDOW * 3 / 2, 1000), 1333);
        // ...and after two windows without a byte, nothing.
        assert_eq!(pace.rate(t0 + RATE_WINDOW * 2, 1000), 0);
        assert_eq!(pace.rate(t0 + RATE_WINDOW * 3, 1000), 0);
    }

    proptest! {
        /// With nobody keeping pace far behind, the rule is exactly "the receiver at rank
        /// n/10 from the most behind is over the lead".
        #[test]
        fn the_crowd_rule_is_the_upper_tenth(lags in prop::collection::vec(0u64..1000, 0..80), lead in 0u64..1000) {
            let mut sorted = lags.clone();
            sorted.sort_unstable_by(|a, b| b.cmp(a));
            let tenth_over = match sorted.len() {
                0 => false,
                n => sorted[n / HOLD_ABOVE_ONE_IN] > lead,
            };
            prop_assert_eq!(must_hold(slow(lags), lead, 0), tenth_over);
        }

        /// One receiver keeping pace far behind holds whatever the others do; one
        /// within the far mark, under 3/4 of the publisher's rate, or too slow to catch
        /// up in CATCH_UP never holds alone.
        #[test]
        fn one_receiver_holds_alone_only_far_behind_and_fast(
            others in prop::collection::vec(0u64..100, 10..80),
            lag in 0u64..100_000,
            rate in 0u64..100_000,
            ingest in 0u64..100_000,
        ) {
            let lead = 1000;
            let mut all = slow(others);
            all.push(Behind { lag, rate });
            let alone = must_hold(all, lead, ingest);
            let catch_up = CATCH_UP.as_secs();
            let far = lag > FAR_LEADS * lead;
            let keeps_pace = rate * 4 >= ingest * 3;
            if far && keeps_pace && lag - lead <= rate * catch_up {
                prop_assert!(alone);
            }
            if !far || !keeps_pace || lag - lead > rate * catch_up {
                prop_assert!(!alone);
            }
        }
    }

    /// A wait for the gate's wake, registered at once.
    fn armed(gate: &IngestGate) -> std::pin::Pin<Box<tokio::sync::futures::Notified<'_>>> {
        let mut waiter = Box::pin(gate.waker().notified());
        waiter.as_mut().enable();
        waiter
    }

    /// Whether `waiter` has been woken, without waiting.
    async fn woken(waiter: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>) -> bool {
        let mut waiter = waiter;
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(std::future::Future::poll(waiter.as_mut(), cx).is_ready())
        })
        .await
    }

    #[tokio::test]
    async fn a_paused_reader_is_woken_only_by_a_receiver_coming_back_within_a_mark() {
        // Lead 100, far mark 200.
        assert_eq!(FAR_LEADS, 2);
        let gate = IngestGate::new(100);
        gate.set_head(1000);
        gate.set_paused(true);
        let mut waiter = armed(&gate);
        gate.advanced(0, 500);
        assert!(!woken(waiter.as_mut()).await, "still 500 behind: no wake");
        gate.advanced(500, 850);
        assert!(woken(waiter.as_mut()).await, "back within the far mark");
        let mut waiter = armed(&gate);
        gate.advanced(850, 880);
        assert!(!woken(waiter.as_mut()).await, "120 behind: no mark crossed");
        gate.advanced(880, 950);
        assert!(woken(waiter.as_mut()).await, "back within the lead");
    }
}
