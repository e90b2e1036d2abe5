//! Receivers: healthy ones verify and time every chunk; stuck ones never read,
//! and at the end are drained to see whether the server closed them.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::chunk::{self, SeqChecker};
use crate::client::{self, Event, Reader};
use crate::stats::Histogram;
use crate::traffic::Shared;

/// How long a stuck receiver's leftovers are read at the end.
const STUCK_DRAIN: Duration = Duration::from_secs(3);

/// What one healthy receiver saw.
#[derive(Debug, Default)]
pub(crate) struct RecvReport {
    pub index: usize,
    pub checker: SeqChecker,
    pub latency: Histogram,
    pub bytes: u64,
    pub corrupt: u64,
    pub last_at: Option<Instant>,
    pub failure: Option<String>,
}

/// How a receiver that stopped reading ended, seen once it reads again while
/// its publisher is still connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StuckEnd {
    /// A close frame with this code (after `chunks` chunks).
    Closed { code: Option<u16>, chunks: u64 },
    /// EOF or reset without a close frame.
    Dropped { chunks: u64 },
    /// Still open: the server kept it.
    Open { chunks: u64 },
}

fn max_message(chunk: usize) -> usize {
    (64 << 20).max(chunk + 1)
}

/// Reads until the run is stopped, checking every chunk.
pub(crate) async fn healthy(stream: TcpStream, shared: Arc<Shared>, index: usize) -> RecvReport {
    let (mut reader, write) = Reader::new(stream, max_message(shared.plan.chunk));
    tokio::spawn(client::heartbeat(write, shared.masked, shared.stop.clone()));
    let mut r = RecvReport {
        index,
        ..RecvReport::default()
    };
    let mut seen = 0u64;
    let (chunk_len, every) = (shared.plan.chunk, shared.plan.verify_every.max(1));
    let ended = tokio::select! {
        biased;
        _ = shared.stop.cancelled() => None,
        res = reader.run(|ev| {
            match ev {
                Event::Binary(data) => {
                    seen += 1;
                    on_chunk(&mut r, &shared, data, chunk_len, seen % every == 0);
                }
                Event::Close => {}
            }
            true
        }) => Some(res),
    };
    match ended {
        None => {}
        Some(Ok(code)) => r.failure = Some(format!("closed early, code {code:?}")),
        Some(Err(e)) => r.failure = Some(format!("read failed: {e}")),
    }
    if r.failure.is_some() {
        shared.progress[index].store(u64::MAX, Ordering::Release);
    }
    r
}

fn on_chunk(r: &mut RecvReport, shared: &Shared, data: &[u8], len: usize, full: bool) {
    match chunk::verify(data, len, full) {
        Ok(stamp) => {
            let now = shared.now_ns();
            r.checker.observe(stamp.seq);
            r.latency.record(now.saturating_sub(stamp.sent_ns) / 1000);
            r.bytes += data.len() as u64;
            r.last_at = Some(Instant::now());
            shared.progress[r.index].store(r.checker.next(), Ordering::Release);
            if shared.waiting.load(Ordering::Acquire) {
                shared.wake.notify_waiters();
            }
        }
        Err(_) => r.corrupt += 1,
    }
}

/// Reads what each stuck receiver has left, in parallel, for a bounded time.
pub(crate) async fn drain_stuck(streams: Vec<TcpStream>, chunk: usize) -> Vec<StuckEnd> {
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|s| tokio::spawn(drain_one(s, chunk)))
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap_or(StuckEnd::Dropped { chunks: 0 }));
    }
    out
}

async fn drain_one(stream: TcpStream, chunk: usize) -> StuckEnd {
    let (mut reader, _write) = Reader::new(stream, max_message(chunk));
    let mut chunks = 0u64;
    let read = reader.run(|ev| {
        if let Event::Binary(_) = ev {
            chunks += 1;
        }
        true
    });
    match tokio::time::timeout(STUCK_DRAIN, read).await {
        Err(_) => StuckEnd::Open { chunks },
        Ok(Ok(code)) => StuckEnd::Closed { code, chunks },
        Ok(Err(_)) => StuckEnd::Dropped { chunks },
    }
}
