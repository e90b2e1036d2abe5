//! Overload (README "Overload"): when the server is the bottleneck the publisher is
//! held back and nobody loses a chunk; a minority of slow or stuck receivers never
//! holds it, and is skipped to the newest join point (understood media, which
//! still decodes) or closed with 1008 (opaque streams, `LAGGING_RECEIVERS=close`).
//! The media tests need ffmpeg (installed by .ci/run) and fail loudly without it.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::media::*;
use common::raw::RawWs;
use common::*;

/// A chunk of `len` bytes whose first 8 are its sequence number.
fn numbered(seq: u64, len: usize) -> Vec<u8> {
    let mut chunk = payload(seq, len.max(8));
    chunk[..8].copy_from_slice(&seq.to_be_bytes());
    chunk
}

fn seq_of(chunk: &[u8]) -> u64 {
    u64::from_be_bytes(chunk[..8].try_into().expect("8 bytes"))
}

/// Reads numbered chunks until the close: (chunks in order, the close code).
async fn count_in_order(mut r: Ws) -> (u64, Option<u16>) {
    let mut next_seq = 0u64;
    loop {
        match next_within(&mut r, Duration::from_secs(30))
            .await
            .expect("receiver stalled")
        {
            Got::Binary(chunk) => {
                assert_eq!(seq_of(&chunk), next_seq, "a chunk missing or out of order");
                next_seq += 1;
            }
            Got::Text(_) => {}
            Got::Closed(code) => return (next_seq, code),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwindowed_max_rate_cuts_nobody_and_loses_nothing() {
    // A publisher as fast as its socket accepts, 20 receivers in the same process:
    // the machine is the bottleneck, so the ingest hold must pace the publisher.
    // The default RECEIVER_QUEUE_MB (64) and INGEST_LEAD_MB (2).
    let server = Server::start(&[
        ("GOP_CACHE_SIZE_MB", "0"),
        ("MAX_IP_CONCURRENT_CONNECTIONS", "64"),
    ]);
    let mut receivers = Vec::new();
    for _ in 0..20 {
        let r = ws(&server.url("/max/k/receive")).await;
        receivers.push(r);
    }
    server.wait_waiting(20).await;
    let readers: Vec<_> = receivers
        .into_iter()
        .map(|r| tokio::spawn(count_in_order(r)))
        .collect();
    let mut publisher = ws(&server.url("/max/k/publish")).await;
    let until = Instant::now() + Duration::from_secs(3);
    let mut sent = 0u64;
    while Instant::now() < until && sent < 100_000 {
        send(&mut publisher, numbered(sent, 64 * 1024)).await;
        sent += 1;
    }
    close(publisher).await;
    for r in readers {
        let (got, code) = tokio::time::timeout(Duration::from_secs(60), r)
            .await
            .expect("receiver finished")
            .expect("receiver task");
        assert_eq!(
            code,
            Some(1000),
            "a receiver was closed after {got} of {sent} chunks: {}",
            server.metrics_text()
        );
        assert_eq!(got, sent, "chunks missing");
    }
    assert_eq!(server.metric("ws_stream_receivers_kicked_total"), 0.0);
    assert_eq!(server.metric("ws_stream_receivers_skipped_total"), 0.0);
    assert!(
        server.metric("ws_stream_ingest_pauses_total") > 0.0,
        "the publisher out-ran 20 receivers without the hold ever pausing it"
    );
}

/// A receiver that never reads, with a small socket buffer so the server sees it stuck soon.
async fn stuck(server: &Server, path: &str) -> RawWs {
    RawWs::connect_with(server.addr, path, Some(16 * 1024)).await
}

/// Reads what a raw receiver gets until the close: (binary payloads, close code).
async fn drain_raw(mut r: RawWs) -> (Vec<Vec<u8>>, Option<u16>) {
    let mut got = Vec::new();
    loop {
        let frame = r.read_frame().await.expect("a close frame before the end");
        match frame.opcode() {
            0x2 => got.push(frame.payload),
            0x8 => return (got, frame.close_code()),
            _ => {}
        }
    }
}

/// `n` receivers of `path`, reading whole messages until the close, once `waiting`
/// receivers (these and any opened before) wait for the publisher.
async fn healthy_receivers(
    server: &Server,
    path: &str,
    n: usize,
    waiting: usize,
) -> Vec<tokio::task::JoinHandle<(Vec<u8>, Option<u16>)>> {
    let mut receivers = Vec::new();
    for _ in 0..n {
        receivers.push(ws(&server.url(path)).await);
    }
    server.wait_waiting(waiting).await;
    receivers
        .into_iter()
        .map(|r| tokio::spawn(collect_with_code(r)))
        .collect()
}

/// Every healthy receiver got exactly `expected`, then a 1000 close.
async fn check_healthy(
    healthy: Vec<tokio::task::JoinHandle<(Vec<u8>, Option<u16>)>>,
    expected: &[u8],
) {
    for (i, h) in healthy.into_iter().enumerate() {
        let (got, code) = tokio::time::timeout(Duration::from_secs(60), h)
            .await
            .expect("healthy receiver finished")
            .expect("healthy receiver task");
        assert_eq!(code, Some(1000), "healthy receiver {i}");
        assert!(
            got == expected,
            "healthy receiver {i}: {} of {} bytes",
            got.len(),
            expected.len()
        );
    }
}

const HEALTHY: usize = 50;

/// `seconds` of VP8 + Opus WebM at about 1.5 Mbit/s (a keyframe every 1.6 s).
fn webm(seconds: u32) -> Vec<u8> {
    webm_encoded(
        "libvpx",
        seconds,
        &["-b:v", "4M", "-qmin", "0", "-qmax", "8"],
    )
}

/// 50 healthy receivers and 2 stuck ones on a stream of `chunks` sent at a steady
/// pace; returns the stuck receivers' close codes once every healthy one checked
/// it got the exact stream.
async fn healthy_and_stuck(server: &Server, channel: &str, chunks: Vec<Vec<u8>>) -> Vec<u16> {
    let path = format!("/{channel}/k/receive");
    let mut stuck_ones = vec![stuck(server, &path).await, stuck(server, &path).await];
    let healthy = healthy_receivers(server, &path, HEALTHY, HEALTHY + 2).await;
    let mut publisher = ws(&server.url(&format!("/{channel}/k/publish"))).await;
    let expected: Vec<u8> = chunks.concat();
    // About 2.5 s whatever the count: a few MB/s, like a handful of HD streams.
    let pause = Duration::from_micros(2_500_000 / chunks.len() as u64);
    for chunk in chunks {
        send(&mut publisher, chunk).await;
        tokio::time::sleep(pause).await;
    }
    close(publisher).await;
    check_healthy(healthy, &expected).await;
    let mut codes = Vec::new();
    for s in stuck_ones.drain(..) {
        let (_, code) = tokio::time::timeout(Duration::from_secs(60), drain_raw(s))
            .await
            .expect("stuck receiver drained");
        codes.push(code.unwrap_or(0));
    }
    codes
}

fn crowd_server() -> Server {
    Server::start(&[
        ("GOP_CACHE_SIZE_MB", "0"),
        ("RECEIVER_QUEUE_MB", "1"),
        ("MAX_IP_CONCURRENT_CONNECTIONS", "64"),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stuck_receivers_of_an_opaque_stream_are_closed_and_fifty_healthy_miss_nothing() {
    let server = crowd_server();
    let chunks: Vec<Vec<u8>> = (0..400).map(|seq| numbered(seq, 16 * 1024)).collect();
    let codes = healthy_and_stuck(&server, "opaque", chunks).await;
    assert_eq!(codes, [1008, 1008]);
    assert_eq!(server.metric("ws_stream_receivers_kicked_total"), 2.0);
    assert_eq!(server.metric("ws_stream_receivers_skipped_total"), 0.0);
    assert_eq!(
        server.metric("ws_stream_ingest_pauses_total"),
        0.0,
        "two stuck receivers of 52 held the publisher"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stuck_receivers_of_webm_are_skipped_and_fifty_healthy_miss_nothing() {
    let server = crowd_server();
    let media = webm(30);
    let codes = healthy_and_stuck(&server, "webm", cut(&media, 11)).await;
    // Stuck for good: skipped once, then closed if over the bound again within a minute
    // before the stream ends (else its socket drains at the end: 1000).
    assert!(
        codes.iter().all(|c| [1000, 1008].contains(c)),
        "{codes:?} {}",
        server.metrics_text()
    );
    let closed = codes.iter().filter(|c| **c == 1008).count() as f64;
    assert_eq!(server.metric("ws_stream_receivers_kicked_total"), closed);
    assert!(
        server.metric("ws_stream_receivers_skipped_total") >= 2.0,
        "each stuck receiver skips before it is closed"
    );
    assert!(server.metric("ws_stream_skipped_bytes_total") > 0.0);
    assert_eq!(server.metric("ws_stream_ingest_pauses_total"), 0.0);
}

/// Publishes `media` over about 6 s to `healthy` receivers and one that reads at
/// about 200 KB/s until the server reports a skip, then at full speed; returns what
/// the throttled one received and its close code.
async fn throttled_receiver(
    server: &Server,
    channel: &str,
    media: &[u8],
    healthy: usize,
) -> (Vec<u8>, Option<u16>) {
    let path = format!("/{channel}/k/receive");
    let mut slow = RawWs::connect_with(server.addr, &path, Some(32 * 1024)).await;
    slow.slow(4096, Duration::from_millis(20));
    let healthy = healthy_receivers(server, &path, healthy, healthy + 1).await;
    let recovered = Arc::new(AtomicBool::new(false));
    let flag = recovered.clone();
    let slow = tokio::spawn(async move {
        let mut got = Vec::new();
        loop {
            if flag.load(Ordering::Relaxed) {
                slow.fast();
            }
            let frame = slow
                .read_frame()
                .await
                .expect("a close frame before the end");
            match frame.opcode() {
                0x2 => got.extend(frame.payload),
                0x8 => return (got, frame.close_code()),
                _ => {}
            }
        }
    });
    let mut publisher = ws(&server.url(&format!("/{channel}/k/publish"))).await;
    let chunks = cut(media, 5);
    let pause = Duration::from_micros(6_000_000 / chunks.len() as u64);
    for chunk in chunks {
        send(&mut publisher, chunk).await;
        if server.metric("ws_stream_receivers_skipped_total") >= 1.0 {
            recovered.store(true, Ordering::Relaxed);
        }
        tokio::time::sleep(pause).await;
    }
    close(publisher).await;
    check_healthy(healthy, media).await;
    tokio::time::timeout(Duration::from_secs(60), slow)
        .await
        .expect("throttled receiver finished")
        .expect("throttled receiver task")
}

async fn check_skipped_media(name: &str, media: Vec<u8>) {
    let server = Server::start(&[
        ("GOP_CACHE_SIZE_MB", "0"),
        ("RECEIVER_QUEUE_MB", "1"),
        ("MAX_IP_CONCURRENT_CONNECTIONS", "16"),
    ]);
    // One slow receiver of three is more than a tenth: it holds the publisher until it
    // proves slower than the stream (5 s of a hold), then it skips.
    let (got, code) = throttled_receiver(&server, name, &media, 2).await;
    assert!(
        server.metric("ws_stream_ingest_pauses_total") >= 1.0,
        "{name}: a third of the audience behind holds the publisher first"
    );
    assert_eq!(
        code,
        Some(1000),
        "{name}: the skipped receiver plays to the end"
    );
    assert_eq!(
        server.metric("ws_stream_receivers_skipped_total"),
        1.0,
        "{name}"
    );
    assert_eq!(
        server.metric("ws_stream_receivers_kicked_total"),
        0.0,
        "{name}"
    );
    let skipped = server.metric("ws_stream_skipped_bytes_total") as usize;
    assert!(skipped > 0, "{name}");
    assert_eq!(
        got.len() + skipped,
        media.len(),
        "{name}: what it got plus what it skipped"
    );
    assert_eq!(
        decode_errors(&got),
        "",
        "{name}: the skipped stream decodes"
    );
    assert!(
        got.starts_with(&media[..4096]),
        "{name}: it started with the stream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_webm_receiver_skips_to_a_cluster_and_still_decodes() {
    check_skipped_media("webm", webm(40)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_fmp4_receiver_skips_to_a_moof_and_still_decodes() {
    check_skipped_media("fmp4", fragmented_mp4_of(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_receiver_of_an_opaque_stream_is_closed_with_1008() {
    let server = Server::start(&[
        ("GOP_CACHE_SIZE_MB", "0"),
        ("RECEIVER_QUEUE_MB", "1"),
        ("MAX_IP_CONCURRENT_CONNECTIONS", "16"),
    ]);
    let media: Vec<u8> = (0..480).flat_map(|seq| numbered(seq, 16 * 1024)).collect();
    // One of eleven: a few never hold the publisher; it is closed.
    let (got, code) = throttled_receiver(&server, "opaque", &media, 10).await;
    assert_eq!(server.metric("ws_stream_ingest_pauses_total"), 0.0);
    assert_eq!(code, Some(1008));
    assert!(
        got.len() < media.len() && media.starts_with(&got),
        "a prefix, then the close"
    );
    assert_eq!(server.metric("ws_stream_receivers_skipped_total"), 0.0);
    assert_eq!(server.metric("ws_stream_receivers_kicked_total"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_receivers_close_closes_even_understood_streams() {
    let server = Server::start(&[
        ("GOP_CACHE_SIZE_MB", "0"),
        ("RECEIVER_QUEUE_MB", "1"),
        ("LAGGING_RECEIVERS", "close"),
        ("MAX_IP_CONCURRENT_CONNECTIONS", "16"),
    ]);
    let media = webm(40);
    let (got, code) = throttled_receiver(&server, "closing", &media, 10).await;
    assert_eq!(code, Some(1008));
    assert!(media.starts_with(&got), "a prefix, then the close");
    assert_eq!(server.metric("ws_stream_receivers_skipped_total"), 0.0);
    assert_eq!(server.metric("ws_stream_receivers_kicked_total"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_play_reader_of_webm_is_cut_not_skipped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start(&[
        ("GOP_CACHE_SIZE_MB", "0"),
        ("RECEIVER_QUEUE_MB", "1"),
        ("MAX_IP_CONCURRENT_CONNECTIONS", "16"),
    ]);
    let media = webm(40);
    let mut stuck = common::http::connect(server.addr, Some(16 * 1024)).await;
    stuck
        .write_all(b"GET /playstuck/k/play HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("request");
    let healthy = healthy_receivers(&server, "/playstuck/k/receive", 2, 3).await;
    let mut publisher = ws(&server.url("/playstuck/k/publish")).await;
    let chunks = cut(&media, 13);
    let pause = Duration::from_micros(6_000_000 / chunks.len() as u64);
    for chunk in chunks {
        send(&mut publisher, chunk).await;
        tokio::time::sleep(pause).await;
    }
    server
        .wait_metric("ws_stream_receivers_kicked_total", |n| n == 1.0)
        .await;
    close(publisher).await;
    check_healthy(healthy, &media).await;
    assert_eq!(server.metric("ws_stream_receivers_skipped_total"), 0.0);
    // Its connection ends without the body's last chunk.
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stuck.read_to_end(&mut all))
        .await
        .expect("the cut connection ends")
        .ok();
    assert!(
        all.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        &all[..all.len().min(64)]
    );
    assert!(!all.ends_with(b"0\r\n\r\n"), "the body was cut, not ended");
}
