//! The lag sweeper of `play` readers: hyper stops polling a body while its
//! socket does not drain, so one task per server checks every reader's lag and
//! cuts the connection of one that is over its bound.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::hub::LagWatch;
use crate::session::SessionInfo;

/// How often the readers' lag is checked (for those whose connection does not take data).
const LAG_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// Counts and logs a reader cut for lagging, once (whoever sees it first).
pub(crate) fn kick(kicked: &AtomicBool, info: &SessionInfo, behind_bytes: u64) {
    if !kicked.swap(true, Ordering::Relaxed) {
        info.metrics.receivers_kicked.inc();
        tracing::warn!(target: "request", channel = %info.channel, kind = info.kind.as_str(), behind_bytes, "{} receiver too slow: over its queue bound, closing", info.tag);
    }
}

/// One reader as the sweeper sees it.
#[derive(Debug)]
pub(crate) struct Watched {
    pub(crate) watch: LagWatch,
    pub(crate) cut: CancellationToken,
    pub(crate) kicked: Arc<AtomicBool>,
    pub(crate) info: SessionInfo,
}

/// Checks every `play` reader's lag every [`LAG_CHECK_INTERVAL`], in one task
/// for the whole server: hyper stops polling a body while its socket does not
/// drain, so such a reader is cut from here (its connection dropped). A reader
/// that reads is checked by its body at every poll, at no extra wake-up.
#[derive(Debug, Default)]
pub(crate) struct LagSweeper {
    readers: Mutex<Vec<Weak<Watched>>>,
    started: AtomicBool,
}

impl LagSweeper {
    /// Registers a reader; true for the first, when the caller starts [`sweep`].
    pub(crate) fn add(&self, reader: &Arc<Watched>) -> bool {
        self.list().push(Arc::downgrade(reader));
        !self.started.swap(true, Ordering::AcqRel)
    }

    fn list(&self) -> std::sync::MutexGuard<'_, Vec<Weak<Watched>>> {
        // Each critical section leaves the list consistent; a poisoned lock is still usable.
        self.readers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops the readers that ended; returns the live ones (checked without the lock).
    fn live(&self) -> Vec<Arc<Watched>> {
        let mut list = self.list();
        list.retain(|w| w.strong_count() > 0);
        list.iter().filter_map(Weak::upgrade).collect()
    }
}

/// The sweeper's task: until the drain, or until the server's state is gone.
pub(crate) async fn sweep(sweeper: Weak<LagSweeper>, drain: CancellationToken) {
    let mut tick = tokio::time::interval(LAG_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = drain.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(sweeper) = sweeper.upgrade() else {
            return;
        };
        for reader in sweeper.live() {
            if let Some(lagged) = reader.watch.check() {
                kick(&reader.kicked, &reader.info, lagged.behind_bytes);
                reader.cut.cancel();
            }
        }
    }
}
