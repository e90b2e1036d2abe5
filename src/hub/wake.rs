//! Wakes a session's receivers when chunks are appended: a version counter
//! and one atomic waker per receiver, so a receiver's wake-up takes no lock
//! shared with the others (only the publisher walks the list, once per burst).

use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

#[derive(Debug, Default)]
pub(crate) struct Wakers {
    version: AtomicU64,
    list: Mutex<Vec<Weak<AtomicWaker>>>,
}

/// One receiver's registration; unregistered when dropped (pruned lazily).
#[derive(Debug)]
pub(crate) struct WakeHandle {
    waker: Arc<AtomicWaker>,
    seen: u64,
}

impl Wakers {
    pub(crate) fn register(&self) -> WakeHandle {
        let waker = Arc::new(AtomicWaker::new());
        let mut list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(&waker));
        WakeHandle {
            waker,
            seen: self.version.load(Ordering::Acquire),
        }
    }

    /// Bumps the version and wakes every registered receiver.
    pub(crate) fn wake_all(&self) {
        self.version.fetch_add(1, Ordering::Release);
        let mut list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        list.retain(|w| match w.upgrade() {
            Some(waker) => {
                waker.wake();
                true
            }
            None => false,
        });
    }

    fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }
}

impl WakeHandle {
    /// Everything appended so far counts as seen.
    pub(crate) fn mark_seen(&mut self, wakers: &Wakers) {
        self.seen = wakers.version();
    }

    /// Resolves once something was appended after the last `mark_seen` (cancel-safe).
    pub(crate) async fn changed(&mut self, wakers: &Wakers) {
        poll_fn(|cx| self.poll_changed(wakers, cx)).await;
    }

    /// [`WakeHandle::changed`] as a poll function.
    pub(crate) fn poll_changed(&mut self, wakers: &Wakers, cx: &mut Context<'_>) -> Poll<()> {
        for attempt in 0..2 {
            let now = wakers.version();
            if now != self.seen {
                self.seen = now;
                return Poll::Ready(());
            }
            if attempt == 0 {
                self.waker.register(cx.waker());
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_wake_after_mark_seen_is_never_lost() {
        let wakers = Arc::new(Wakers::default());
        let mut waiter = wakers.register();
        waiter.mark_seen(&wakers);
        let w = wakers.clone();
        let task = tokio::spawn(async move {
            waiter.changed(&w).await;
            waiter
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        wakers.wake_all();
        let mut waiter = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        // A wake before waiting is seen at once.
        wakers.wake_all();
        tokio::time::timeout(Duration::from_secs(5), waiter.changed(&wakers))
            .await
            .unwrap();
        drop(waiter);
        wakers.wake_all();
        assert!(
            wakers.list.lock().unwrap().is_empty(),
            "dropped waiters are pruned"
        );
    }
}
