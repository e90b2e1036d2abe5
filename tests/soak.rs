//! Fault and soak test: churn on loopback — publishers starting and stopping
//! (cleanly or by TCP reset), receivers joining and leaving, stuck readers,
//! oversized messages, garbage — then every healthy receiver must have seen a
//! gap-free stream and the server's connections, file descriptors and memory
//! must be back near their baseline.
//!
//! `SOAK_SECONDS` sets the churn time (default 8; BENCHMARKS.md has a long run).

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

const CHANNELS: usize = 3;

#[derive(Default)]
struct Tally {
    chunks_checked: AtomicU64,
    healthy_sessions: AtomicU64,
    publishes: AtomicU64,
    resets: AtomicU64,
    stuck: AtomicU64,
    oversized: AtomicU64,
    garbage: AtomicU64,
}

fn chunk(session: u64, seq: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(2048);
    v.extend_from_slice(&session.to_be_bytes());
    v.extend_from_slice(&seq.to_be_bytes());
    v.resize(16 + (seq as usize * 131) % 2000, (seq % 251) as u8);
    v
}

fn parse(c: &[u8]) -> (u64, u64) {
    assert!(c.len() >= 16, "short chunk");
    let session = u64::from_be_bytes(c[..8].try_into().unwrap());
    let seq = u64::from_be_bytes(c[8..16].try_into().unwrap());
    assert_eq!(c.len(), 16 + (seq as usize * 131) % 2000, "chunk length");
    assert!(
        c[16..].iter().all(|b| *b == (seq % 251) as u8),
        "chunk content"
    );
    (session, seq)
}

async fn publisher_loop(
    server_url: String,
    channel: usize,
    until: Instant,
    tally: Arc<Tally>,
    seed: u64,
) {
    let mut round = 0u64;
    while Instant::now() < until {
        round += 1;
        let session = seed * 1_000_000 + round;
        let Ok(mut p) = try_ws(&format!("{server_url}/soak{channel}/k/publish")).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tally.publishes.fetch_add(1, Ordering::Relaxed);
        let chunks = 50 + (payload(session, 1)[0] as u64 % 200);
        for seq in 0..chunks {
            if p.send(Message::Binary(chunk(session, seq).into()))
                .await
                .is_err()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        match round % 4 {
            0 => {
                tally.resets.fetch_add(1, Ordering::Relaxed);
                reset(p);
            }
            1 => {
                // Over MAX_MESSAGE_SIZE_MB: closed with 1009.
                let _ = p.send(Message::Binary(vec![0; (1 << 20) + 1].into())).await;
                assert_eq!(expect_close(&mut p).await, Some(1009));
                tally.oversized.fetch_add(1, Ordering::Relaxed);
            }
            _ => close(p).await,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Joins, checks that each session it sees is gap-free from its first chunk, leaves at some point.
async fn receiver_loop(
    server_url: String,
    channel: usize,
    until: Instant,
    tally: Arc<Tally>,
    seed: u64,
) {
    let mut round = 0u64;
    while Instant::now() < until {
        round += 1;
        let Ok(mut r) = try_ws(&format!("{server_url}/soak{channel}/k/receive")).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let stay = Duration::from_millis(100 + (payload(seed + round, 2)[1] as u64) * 8);
        let leave_at = Instant::now() + stay;
        let mut current: Option<(u64, u64)> = None;
        let mut healthy = false;
        while let Some(got) =
            next_within(&mut r, leave_at.saturating_duration_since(Instant::now())).await
        {
            match got {
                Got::Binary(b) => {
                    let (session, seq) = parse(&b);
                    match current {
                        Some((s, last)) if s == session => {
                            assert_eq!(seq, last + 1, "gap or duplicate in session {session}")
                        }
                        _ => assert_eq!(
                            seq, 0,
                            "a session must start at its first chunk (cache intact)"
                        ),
                    }
                    current = Some((session, seq));
                    tally.chunks_checked.fetch_add(1, Ordering::Relaxed);
                    healthy = true;
                }
                Got::Text(_) => {}
                Got::Closed(_) => break,
            }
        }
        if healthy {
            tally.healthy_sessions.fetch_add(1, Ordering::Relaxed);
        }
        if round % 3 == 0 {
            reset(r);
        } else {
            close(r).await;
        }
    }
}

/// Connects receivers that never read, so the server must cut them.
async fn stuck_loop(server_url: String, until: Instant, tally: Arc<Tally>) {
    let mut held = Vec::new();
    while Instant::now() < until {
        for channel in 0..CHANNELS {
            if let Ok(r) = try_ws(&format!("{server_url}/soak{channel}/k/receive")).await {
                held.push(r);
                tally.stuck.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        if held.len() > 6 {
            held.drain(..3);
        }
    }
}

/// Garbage: bad HTTP, and bytes that are not WebSocket frames after an upgrade.
fn garbage_loop(addr: std::net::SocketAddr, until: Instant, tally: Arc<Tally>) {
    let mut i = 0u64;
    while Instant::now() < until {
        i += 1;
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            let junk = payload(i, 300);
            let request = if i % 2 == 0 {
                junk
            } else {
                let mut r = format!(
                    "GET /junk{i}/k/receive HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
                )
                .into_bytes();
                r.extend(junk);
                r
            };
            let _ = s.write_all(&request);
            tally.garbage.fetch_add(1, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(30));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_leaves_no_trace() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let server = Server::process(&[
        ("CONCURRENT_LIMIT_WHITELIST", "127.0.0.1"),
        ("MAX_MESSAGE_SIZE_MB", "1"),
        ("RECEIVER_QUEUE_MB", "1"),
        ("LOG_REQUESTS", "NO"),
        ("METRICS_ADDRESS", "127.0.0.1:0"),
    ]);
    // Warm up once so lazily allocated runtime state counts in the baseline.
    close(ws(&server.url("/warm/k/receive")).await).await;
    server.wait_connections("receive", 0).await;
    let fds_before = server.fd_count();
    let rss_before = server.rss_kib();
    let tally = Arc::new(Tally::default());
    let until = Instant::now() + Duration::from_secs(seconds);
    let base = format!("ws://{}", server.addr);
    let mut tasks = Vec::new();
    for channel in 0..CHANNELS {
        tasks.push(tokio::spawn(publisher_loop(
            base.clone(),
            channel,
            until,
            tally.clone(),
            channel as u64 + 1,
        )));
        for r in 0..3 {
            tasks.push(tokio::spawn(receiver_loop(
                base.clone(),
                channel,
                until,
                tally.clone(),
                (channel * 10 + r) as u64,
            )));
        }
    }
    tasks.push(tokio::spawn(stuck_loop(base.clone(), until, tally.clone())));
    let addr = server.addr;
    let garbage_tally = tally.clone();
    let garbage = std::thread::spawn(move || garbage_loop(addr, until, garbage_tally));
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(seconds + 60), t)
            .await
            .expect("soak task finished in time")
            .expect("soak task passed its checks");
    }
    garbage.join().unwrap();
    // Everything closed: counts come back to the baseline.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut fds = server.fd_count();
    while fds > fds_before + 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        fds = server.fd_count();
    }
    let rss_after = server.rss_kib();
    println!(
        "soak {seconds}s: publishes {}, resets {}, oversized {}, healthy receiver sessions {}, chunks checked {}, stuck {}, garbage {}, fds {fds_before}->{fds}, rss {rss_before}->{rss_after} KiB",
        tally.publishes.load(Ordering::Relaxed),
        tally.resets.load(Ordering::Relaxed),
        tally.oversized.load(Ordering::Relaxed),
        tally.healthy_sessions.load(Ordering::Relaxed),
        tally.chunks_checked.load(Ordering::Relaxed),
        tally.stuck.load(Ordering::Relaxed),
        tally.garbage.load(Ordering::Relaxed),
    );
    assert!(
        fds <= fds_before + 2,
        "file descriptors leaked: {fds_before} -> {fds}"
    );
    assert!(tally.chunks_checked.load(Ordering::Relaxed) > 1000);
    assert!(tally.publishes.load(Ordering::Relaxed) >= CHANNELS as u64 * 2);
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS {rss_before} -> {rss_after} KiB"
    );
    let text = server.metrics_text();
    for line in text.lines().filter(|l| {
        l.starts_with("ws_stream_connections{") || l.starts_with("ws_stream_channels_active ")
    }) {
        assert!(line.ends_with(" 0"), "not back to zero: {line}");
    }
    assert!(text.contains("ws_stream_receivers_kicked_total"));
}
