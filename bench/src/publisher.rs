//! The publisher of one channel: builds each chunk in one reused buffer
//! (frame head, then the chunk, masked when the target is a server), paces it
//! to the rate, and never leads its slowest healthy receiver by more than the
//! window.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::chunk;
use crate::client::{self, HEARTBEAT};
use crate::traffic::Shared;

/// Hard cap on chunks per publisher and run.
const MAX_CHUNKS: u64 = 100_000_000;
/// Longest wait for the slowest receiver before the run is called stalled.
const STALL: Duration = Duration::from_secs(10);

/// Publishes on channel `c` for the plan's duration; returns the chunk count.
/// The connection stays open until the run stops, so receivers drain first.
pub(crate) async fn publish(stream: TcpStream, shared: Arc<Shared>, c: usize) -> Result<u64> {
    let (mut read, mut write) = stream.into_split();
    let stop = shared.stop.clone();
    // Server heartbeats (and anything else) are read and dropped.
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                n = read.read(&mut buf) => if !matches!(n, Ok(n) if n > 0) { break },
            }
        }
    });
    let res = send_all(&mut write, &shared, c).await;
    let sent = match &res {
        Ok(n) => *n,
        Err(_) => 0,
    };
    shared.published[c].store(sent, Ordering::Release);
    shared.stop.cancelled().await;
    let _ = write.shutdown().await;
    res
}

async fn send_all(
    write: &mut tokio::net::tcp::OwnedWriteHalf,
    shared: &Shared,
    c: usize,
) -> Result<u64> {
    let plan = &shared.plan;
    let key = shared.masked.then(|| mask_key(c));
    let head = client::frame_head(0x2, plan.chunk, key);
    let mut buf = vec![0u8; head.len() + plan.chunk];
    buf[..head.len()].copy_from_slice(&head);
    let beat = client::heartbeat_frame(shared.masked);
    let interval = plan
        .rate_bps
        .map(|bps| Duration::from_secs_f64(plan.chunk as f64 * 8.0 / bps));
    let start = tokio::time::Instant::now();
    let end = Instant::now() + plan.duration;
    let mut last_beat = Instant::now();
    let mut slowest = 0u64;
    let mut seq = 0u64;
    while seq < MAX_CHUNKS && Instant::now() < end {
        if let Some(iv) = interval {
            tokio::time::sleep_until(start + iv.mul_f64(seq as f64)).await;
        }
        if seq >= slowest.saturating_add(plan.window) {
            slowest = wait_for_window(shared, c, seq).await?;
        }
        let payload = &mut buf[head.len()..];
        chunk::fill(payload, seq, shared.now_ns());
        if let Some(k) = key {
            chunk::apply_mask(payload, k);
        }
        write.write_all(&buf).await?;
        if last_beat.elapsed() >= HEARTBEAT {
            write.write_all(&beat).await?;
            last_beat = Instant::now();
        }
        seq += 1;
    }
    Ok(seq)
}

/// Waits until the slowest healthy receiver of `c` is less than a window
/// behind `seq`; returns its position.
async fn wait_for_window(shared: &Shared, c: usize, seq: u64) -> Result<u64> {
    let deadline = Instant::now() + STALL;
    loop {
        // Registered before the check, so a wake-up in between is not lost.
        let notified = shared.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        shared.waiting.store(true, Ordering::Release);
        let slowest = shared.slowest(c);
        if seq < slowest.saturating_add(shared.plan.window) {
            shared.waiting.store(false, Ordering::Release);
            return Ok(slowest);
        }
        if Instant::now() >= deadline {
            bail!("receivers stalled at chunk {slowest} while {seq} was due");
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
    }
}

fn mask_key(c: usize) -> [u8; 4] {
    let k = chunk::seed_of(c as u64 ^ 0x6d61_736b) as u32;
    k.to_le_bytes()
}
