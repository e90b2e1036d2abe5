//! Liveness: when a client last sent bytes. The idle timeout counts silence,
//! not the time one large message takes to arrive.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Instant;

/// The time of the last bytes received, shared by a reader and its watcher.
#[derive(Debug, Clone)]
pub(super) struct Activity {
    base: Instant,
    last_nanos: Arc<AtomicU64>,
}

impl Activity {
    pub(super) fn new() -> Self {
        Self {
            base: Instant::now(),
            last_nanos: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Counts now as activity.
    pub(super) fn touch(&self) {
        let nanos = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_nanos.store(nanos, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.base + Duration::from_nanos(self.last_nanos.load(Ordering::Relaxed))
    }

    /// Wraps a reader so that every read with data counts as activity.
    pub(super) fn track<R>(&self, inner: R) -> Tracked<R> {
        Tracked {
            inner,
            activity: self.clone(),
        }
    }

    /// Runs `fut` until it completes (`Some`) or the client has sent nothing for `idle` (`None`).
    pub(super) async fn within_idle<F: Future>(&self, fut: F, idle: Duration) -> Option<F::Output> {
        tokio::pin!(fut);
        loop {
            let deadline = self.last() + idle;
            match tokio::time::timeout_at(deadline, fut.as_mut()).await {
                Ok(output) => return Some(output),
                Err(_) if self.last() + idle > Instant::now() => continue,
                Err(_) => return None,
            }
        }
    }
}

/// A reader that records when data arrives.
#[derive(Debug)]
pub(super) struct Tracked<R> {
    inner: R,
    activity: Activity,
}

impl<R: AsyncRead + Unpin> AsyncRead for Tracked<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slow_but_steady_data_is_not_idle_and_silence_is() {
        let activity = Activity::new();
        let (mut client, server) = tokio::io::duplex(64);
        let mut reader = activity.track(server);
        let writer = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(40)).await;
                client.write_all(b"x").await.unwrap();
            }
            client
        });
        // One "message" of 5 bytes that takes 200 s to arrive, with a 60 s idle limit.
        let mut got = [0u8; 5];
        let read = activity.within_idle(reader.read_exact(&mut got), Duration::from_secs(60));
        assert!(read.await.is_some());
        let _client = writer.await.unwrap();
        let mut more = [0u8; 1];
        let silent = activity.within_idle(reader.read_exact(&mut more), Duration::from_secs(60));
        assert!(silent.await.is_none());
    }
}
