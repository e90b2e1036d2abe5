//! Signals between a session's reader and writer: how the session ends (the
//! first reason given wins) and the pong owed for the latest ping. Polled on
//! every wake of a receiver's writer, so checking it is lock-free (atomic flags
//! and two atomic wakers).

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::Poll;

use futures_util::task::AtomicWaker;

/// Why and how a connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Close {
    pub code: u16,
    pub reason: &'static str,
}

impl Close {
    pub(crate) const END_OF_STREAM: Close = Close {
        code: 1000,
        reason: "end of stream",
    };
    pub(crate) const CLIENT_CLOSED: Close = Close {
        code: 1000,
        reason: "",
    };
    pub(crate) const KILLED: Close = Close {
        code: 1000,
        reason: "stream killed",
    };
    pub(crate) const SHUTDOWN: Close = Close {
        code: 1001,
        reason: "server shutting down",
    };
    pub(crate) const PROTOCOL: Close = Close {
        code: 1002,
        reason: "protocol error",
    };
    /// RFC 6455 §7.4.1: data inconsistent with the message type (a text message
    /// that is not UTF-8).
    pub(crate) const INVALID_DATA: Close = Close {
        code: 1007,
        reason: "invalid UTF-8",
    };
    pub(crate) const LAGGING: Close = Close {
        code: 1008,
        reason: "receiver too slow",
    };
    pub(crate) const IDLE: Close = Close {
        code: 1008,
        reason: "idle timeout",
    };
    pub(crate) const INVALID_KEY: Close = Close {
        code: 1008,
        reason: "invalid streaming key",
    };
    /// An edge lost the origin its channel was pulled from.
    pub(crate) const ORIGIN_LOST: Close = Close {
        code: 1011,
        reason: "origin lost",
    };
    pub(crate) const TOO_BIG: Close = Close {
        code: 1009,
        reason: "message too big",
    };
}

/// Which of the session's two tasks waits.
#[derive(Debug, Clone, Copy)]
pub(super) enum Side {
    Reader,
    Writer,
}

#[derive(Debug, Default)]
pub(super) struct Signals {
    close: Mutex<Option<Close>>,
    closed: AtomicBool,
    pong: Mutex<Option<Vec<u8>>>,
    pong_owed: AtomicBool,
    reader: AtomicWaker,
    writer: AtomicWaker,
}

impl Signals {
    /// Records `close` unless a reason was given before, and wakes both sides.
    pub(super) fn close(&self, close: Close) {
        self.close
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(close);
        self.closed.store(true, Ordering::Release);
        self.reader.wake();
        self.writer.wake();
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The first reason given.
    pub(super) fn reason(&self) -> Close {
        let slot = self.close.lock().unwrap_or_else(PoisonError::into_inner);
        slot.unwrap_or(Close::SHUTDOWN)
    }

    /// Asks the writer to answer a ping (only the latest is answered, as RFC 6455 allows).
    pub(super) fn ping(&self, payload: Vec<u8>) {
        *self.pong.lock().unwrap_or_else(PoisonError::into_inner) = Some(payload);
        self.pong_owed.store(true, Ordering::Release);
        self.writer.wake();
    }

    /// The pong to send, if a ping came in.
    pub(super) fn take_pong(&self) -> Option<Vec<u8>> {
        // Load first: the common case must not write to the shared flag.
        if !self.pong_owed.load(Ordering::Acquire) || !self.pong_owed.swap(false, Ordering::AcqRel)
        {
            return None;
        }
        self.pong
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Resolves once the session is closing, or (for the writer) a pong is owed.
    pub(super) async fn signalled(&self, side: Side) {
        let owed = matches!(side, Side::Writer);
        self.wait(side, || {
            self.is_closed() || (owed && self.pong_owed.load(Ordering::Acquire))
        })
        .await;
    }

    /// Resolves once the session is closing (cancel-safe; one waiter per side).
    pub(super) async fn closed(&self, side: Side) {
        self.wait(side, || self.is_closed()).await;
    }

    async fn wait(&self, side: Side, ready: impl Fn() -> bool) {
        let waker = match side {
            Side::Reader => &self.reader,
            Side::Writer => &self.writer,
        };
        poll_fn(|cx| {
            if ready() {
                return Poll::Ready(());
            }
            waker.register(cx.waker());
            if ready() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_reason_wins_and_both_sides_wake() {
        let signals = std::sync::Arc::new(Signals::default());
        let c = signals.clone();
        let reader = tokio::spawn(async move { c.closed(Side::Reader).await });
        let c = signals.clone();
        let writer = tokio::spawn(async move { c.closed(Side::Writer).await });
        tokio::task::yield_now().await;
        signals.close(Close::IDLE);
        signals.close(Close::TOO_BIG);
        reader.await.unwrap();
        writer.await.unwrap();
        assert_eq!(signals.reason(), Close::IDLE);
        signals.closed(Side::Writer).await;
    }

    #[tokio::test]
    async fn a_ping_wakes_the_writer_once_with_the_latest_payload() {
        let signals = Signals::default();
        assert_eq!(signals.take_pong(), None);
        signals.ping(vec![1]);
        signals.ping(vec![2]);
        signals.signalled(Side::Writer).await;
        assert_eq!(signals.take_pong(), Some(vec![2]));
        assert_eq!(signals.take_pong(), None);
        assert!(!signals.is_closed());
    }
}
