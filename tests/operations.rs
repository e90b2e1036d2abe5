//! Operations: graceful shutdown through the real binary (signals, exit code),
//! metrics, health and slow-client defences through the library's `run()`.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::coordinator::Coordinator;
use common::*;
use ws_stream_server::control::codec::ControlMessage;

/// One metric's value from the exposition text.
fn metric(text: &str, sample: &str) -> f64 {
    metric_in(text, sample).unwrap_or_else(|| panic!("no metric {sample} in:\n{text}"))
}

#[tokio::test]
async fn sigterm_closes_everyone_with_1001_sends_publish_end_and_exits_0() {
    let mut coord = Coordinator::start().await;
    let base = coord.base_url();
    let mut server = Server::process(&[
        ("CONTROL_BASE_URL", base.as_str()),
        ("SHUTDOWN_GRACE_SECONDS", "3"),
    ]);
    let mut link = coord.link().await;
    server.wait_control(true).await;
    let url = server.url("/bye/k/publish");
    let publish = tokio::spawn(async move { try_ws(&url).await });
    let request = link.recv().await;
    link.send(
        &ControlMessage::new("PUBLISH-ACCEPT")
            .with_param("Request-ID", request.param("Request-ID").unwrap())
            .with_param("Stream-Channel", "bye")
            .with_param("Stream-ID", "id-bye"),
    )
    .await;
    let mut publisher = publish.await.unwrap().unwrap();
    let mut receivers = Vec::new();
    for kind in ["receive", "receive-clear-cache"] {
        receivers.push(ws(&server.url(&format!("/bye/k/{kind}"))).await);
    }
    let mut waiting = ws(&server.url("/other/k/receive")).await;
    server.wait_playing(2).await;
    server.wait_waiting(1).await;
    let started = Instant::now();
    let stopper = std::thread::spawn(move || {
        let status = server.stop();
        (status, server.log_text())
    });
    assert_eq!(expect_close(&mut publisher).await, Some(1001));
    for r in &mut receivers {
        assert_eq!(expect_close(r).await, Some(1001));
    }
    assert_eq!(expect_close(&mut waiting).await, Some(1001));
    let end = link.recv().await;
    assert_eq!(
        (end.method(), end.param("Stream-ID")),
        ("PUBLISH-END", Some("id-bye"))
    );
    let (status, log) = stopper.join().unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(!log.contains("grace period over"), "{log}");
}

#[tokio::test]
async fn metrics_reflect_a_scripted_session() {
    let server = Server::start(&[
        ("METRICS_ADDRESS", "127.0.0.1:0"),
        ("GOP_CACHE_SIZE_MB", "1"),
    ]);
    let addr = server.metrics_addr();
    assert_eq!(get(addr, "/healthz"), (200, "ok\n".to_owned()));
    // The public listener is unchanged.
    assert_eq!(get(server.addr, "/metrics").0, 404);
    let mut publisher = ws(&server.url("/m/k/publish")).await;
    let mut a = ws(&server.url("/m/k/receive")).await;
    let mut b = ws(&server.url("/m/k/receive")).await;
    server.wait_playing(2).await;
    let _ = try_ws(&server.url("/m/k/nope")).await;
    for i in 0..3u8 {
        send(&mut publisher, vec![i; 100]).await;
    }
    for r in [&mut a, &mut b] {
        for _ in 0..3 {
            next_binary(r).await;
        }
    }
    // A writer counts a chunk once its write returned, which may be just after
    // the receiver read it.
    server
        .wait_metric("ws_stream_chunks_out_total", |n| n == 6.0)
        .await;
    let text = get(addr, "/metrics").1;
    assert_eq!(metric(&text, "ws_stream_chunks_in_total"), 3.0);
    assert_eq!(metric(&text, "ws_stream_bytes_in_total"), 300.0);
    assert_eq!(metric(&text, "ws_stream_chunks_out_total"), 6.0);
    assert_eq!(metric(&text, "ws_stream_bytes_out_total"), 600.0);
    assert_eq!(
        metric(&text, "ws_stream_connections{kind=\"publish\"}"),
        1.0
    );
    assert_eq!(
        metric(&text, "ws_stream_connections{kind=\"receive\"}"),
        2.0
    );
    assert_eq!(metric(&text, "ws_stream_channels_active"), 1.0);
    assert_eq!(metric(&text, "ws_stream_cache_bytes"), 3.0 * 116.0);
    assert_eq!(metric(&text, "ws_stream_receivers_kicked_total"), 0.0);
    assert_eq!(metric(&text, "ws_stream_control_connected"), 0.0);
    assert_eq!(
        metric(
            &text,
            "ws_stream_requests_refused_total{reason=\"invalid_kind\"}"
        ),
        1.0
    );
    close(publisher).await;
    expect_close(&mut a).await;
    expect_close(&mut b).await;
    server.wait_connections("receive", 0).await;
    server.wait_connections("publish", 0).await;
    let text = get(addr, "/metrics").1;
    assert_eq!(metric(&text, "ws_stream_channels_active"), 0.0);
    assert_eq!(metric(&text, "ws_stream_cache_bytes"), 0.0);
    assert_eq!(
        metric(&text, "ws_stream_connections{kind=\"publish\"}"),
        0.0
    );
    assert_eq!(
        metric(&text, "ws_stream_connections{kind=\"receive\"}"),
        0.0
    );
}

#[test]
fn a_slowloris_client_is_cut_at_the_deadline_while_others_are_served() {
    let server = Server::start(&[("UPGRADE_TIMEOUT_SECONDS", "1")]);
    let mut slow = std::net::TcpStream::connect(server.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    slow.write_all(b"GET /c/k/receive HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = Instant::now();
    let mut cut_after = None;
    while started.elapsed() < Duration::from_secs(6) {
        assert_eq!(get(server.addr, "/").0, 200, "others are served meanwhile");
        if slow.write_all(b"X-Slow: a\r\n").is_err() {
            cut_after = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 256];
        match slow.read(&mut buf) {
            Ok(0) => {
                cut_after = Some(started.elapsed());
                break;
            }
            Ok(_) => {
                cut_after = Some(started.elapsed());
                break;
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                cut_after = Some(started.elapsed());
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let cut_after = cut_after.expect("the slow client was never cut");
    assert!(
        cut_after >= Duration::from_millis(800),
        "cut too early: {cut_after:?}"
    );
    assert!(
        cut_after < Duration::from_secs(4),
        "cut too late: {cut_after:?}"
    );
}

/// On the paused clock, with the default 10 s `UPGRADE_TIMEOUT_SECONDS`.
#[tokio::test(start_paused = true)]
async fn a_head_that_never_ends_holds_no_slot_and_is_cut_at_the_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start_here(&[("MAX_IP_CONCURRENT_CONNECTIONS", "1")]).await;
    let mut idle = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /c/k/receive HTTP/1.1\r\n")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    // The unfinished head holds no slot: the one slot of this address is free.
    let receiver = ws(&server.url("/c/k/receive")).await;
    let mut buf = [0u8; 256];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(60), idle.read(&mut buf))
            .await
            .expect("the server cut the unfinished head");
        if matches!(read, Ok(0) | Err(_)) {
            break;
        }
    }
    let cut = started.elapsed();
    assert!(
        cut >= Duration::from_secs(10) && cut < Duration::from_secs(11),
        "cut after {cut:?}"
    );
    close(receiver).await;
}

/// SIGTERM with a receiver that never reads (its writer blocked mid-stream)
/// and a publish request the coordinator never answers (it keeps the drain
/// busy): the process exits 0 at `SHUTDOWN_GRACE_SECONDS`, within a margin,
/// and says the grace period ran out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_one_grace_period_even_with_a_client_that_never_reads() {
    let mut coord = Coordinator::start().await;
    let base = coord.base_url();
    let mut server = Server::process(&[
        ("CONTROL_BASE_URL", base.as_str()),
        ("SHUTDOWN_GRACE_SECONDS", "2"),
        ("GOP_CACHE_SIZE_MB", "0"),
    ]);
    let mut link = coord.link().await;
    server.wait_control(true).await;
    let url = server.url("/stuck/k/publish");
    let publish = tokio::spawn(async move { try_ws(&url).await });
    let request = link.recv().await;
    link.send(
        &ControlMessage::new("PUBLISH-ACCEPT")
            .with_param("Request-ID", request.param("Request-ID").unwrap())
            .with_param("Stream-Channel", "stuck")
            .with_param("Stream-ID", "id-stuck"),
    )
    .await;
    let mut publisher = publish.await.unwrap().unwrap();
    // Asked of the coordinator, never answered.
    let pending_url = server.url("/pending/k/publish");
    let _pending = tokio::spawn(async move { try_ws(&pending_url).await });
    assert_eq!(link.recv().await.method(), "PUBLISH-REQUEST");
    // A raw receiver: upgraded, then never reads a byte.
    let mut stuck = std::net::TcpStream::connect(server.addr).unwrap();
    stuck
        .write_all(
            b"GET /stuck/k/receive HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .unwrap();
    server.wait_playing(1).await;
    // 16 MiB: far more than the socket buffers hold, so the writer is blocked
    // (possibly inside its very first chunk: a peer that never reads may not
    // even take 256 KiB, so nothing needs to have been written yet).
    for i in 0..64u64 {
        send(&mut publisher, payload(i, 256 * 1024)).await;
    }
    server
        .wait_metric("ws_stream_chunks_in_total", |n| n >= 64.0)
        .await;
    let started = Instant::now();
    let status = tokio::task::block_in_place(|| server.stop());
    let took = started.elapsed();
    assert_eq!(status.code(), Some(0), "{}", server.log_text());
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_millis(2_000 + 1_500),
        "exit took {took:?}; log:\n{}",
        server.log_text()
    );
    assert!(
        server.log_text().contains("grace period over"),
        "the pending request should have outlived the grace period: {}",
        server.log_text()
    );
    drop(stuck);
}
