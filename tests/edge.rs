//! Edge relays (`ORIGIN_URLS`) with real server processes on loopback: an
//! origin, edges pulling from it, and an edge pulling from an edge.

mod common;

use common::media::*;
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// What every origin of these tests allows its edges (all on 127.0.0.1), as
/// README's *Scaling* section tells operators to set it.
const ORIGIN: &[(&str, &str)] = &[
    ("PLAY_WHITELIST", "127.0.0.1"),
    ("CONCURRENT_LIMIT_WHITELIST", "127.0.0.1"),
];

fn origin() -> Server {
    Server::process(ORIGIN)
}

/// An edge pulling from `origins` (in that order), with `vars` over short timers.
fn edge(origins: &[&Server], vars: &[(&str, &str)]) -> Server {
    let urls: Vec<String> = origins.iter().map(|o| format!("ws://{}", o.addr)).collect();
    let urls = urls.join(",");
    let mut all = vec![
        ("ORIGIN_URLS", urls.as_str()),
        ("EDGE_RETRY_SECONDS", "1"),
        ("EDGE_LINGER_SECONDS", "1"),
        ("CONCURRENT_LIMIT_WHITELIST", "127.0.0.1"),
    ];
    all.extend_from_slice(vars);
    Server::process(&all)
}

const UPSTREAMS_WAITING: &str = "ws_stream_edge_upstreams{state=\"waiting\"}";
const UPSTREAMS_STREAMING: &str = "ws_stream_edge_upstreams{state=\"streaming\"}";
const PULLS_STARTED: &str = "ws_stream_edge_pulls_started_total";

/// Receive sessions open on `server` (for an origin: its edges' upstreams).
fn receive_connections(server: &Server) -> f64 {
    server.metric("ws_stream_connections{kind=\"receive\"}")
}

/// The close code and reason, skipping heartbeats.
async fn close_of(ws: &mut Ws) -> (Option<u16>, String) {
    loop {
        let message = tokio::time::timeout(STEP, ws.next())
            .await
            .expect("no close in time");
        match message {
            Some(Ok(Message::Close(frame))) => {
                return frame.map_or((None, String::new()), |f| {
                    (Some(u16::from(f.code)), f.reason.to_string())
                })
            }
            Some(Ok(Message::Text(t))) if t.as_str() == "h" => continue,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected the close, got {other:?}"),
        }
    }
}

/// Expects `ERROR: Invalid streaming key` (heartbeats skipped), then the 1008 close.
async fn expect_invalid_key(ws: &mut Ws) {
    loop {
        match next(ws).await {
            Got::Text(t) if t == "h" => continue,
            Got::Text(t) => {
                assert_eq!(t, "ERROR: Invalid streaming key");
                break;
            }
            other => panic!("expected the refusal text, got {other:?}"),
        }
    }
    assert_eq!(expect_close(ws).await, Some(1008));
}

/// Chunks `0..n` of a test stream.
fn chunks(seed: u64, n: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| payload(seed * 1000 + i, 1 + (i as usize * 7919) % 70_000))
        .collect()
}

/// Reads binary messages (heartbeats skipped) until `len` bytes came.
async fn read_bytes(ws: &mut Ws, len: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < len {
        got.extend(next_binary(ws).await);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_edge_and_a_chain_relay_byte_exact_over_one_upstream_per_channel() {
    let origin = origin();
    let edge_a = edge(&[&origin], &[]);
    let edge_b = edge(&[&origin], &[]);
    // A chain: origin -> edge A -> edge C.
    let edge_c = edge(&[&edge_a], &[]);
    let mut on_a = Vec::new();
    for _ in 0..50 {
        on_a.push(ws(&edge_a.url("/live/k/receive")).await);
    }
    let mut others = Vec::new();
    for server in [&edge_b, &edge_c] {
        for _ in 0..3 {
            others.push(ws(&server.url("/live/k/receive")).await);
        }
    }
    // 50 local receivers + edge C's upstream wait on A; the origin sees A and B once each.
    edge_a.wait_waiting(51).await;
    edge_b.wait_waiting(3).await;
    edge_c.wait_waiting(3).await;
    origin.wait_waiting(2).await;
    assert_eq!(receive_connections(&origin), 2.0);
    assert_eq!(receive_connections(&edge_a), 51.0);
    for server in [&edge_a, &edge_b, &edge_c] {
        assert_eq!(server.metric(PULLS_STARTED), 1.0);
        assert_eq!(server.metric(UPSTREAMS_WAITING), 1.0);
    }
    let stream = chunks(1, 40);
    let total: usize = stream.iter().map(Vec::len).sum();
    let expected: Vec<u8> = stream.concat();
    let mut publisher = ws(&origin.url("/live/k/publish")).await;
    for chunk in stream {
        send(&mut publisher, chunk).await;
    }
    for receiver in on_a.iter_mut().chain(others.iter_mut()) {
        assert!(read_bytes(receiver, total).await == expected);
    }
    for server in [&edge_a, &edge_b, &edge_c] {
        assert_eq!(server.metric(UPSTREAMS_STREAMING), 1.0);
    }
    // Still one upstream per channel per edge while streaming.
    assert_eq!(receive_connections(&origin), 2.0);
    assert_eq!(receive_connections(&edge_a), 51.0);
    // The publisher ends at the origin: 1000 on every receiver of every edge.
    close(publisher).await;
    for receiver in on_a.iter_mut().chain(others.iter_mut()) {
        assert_eq!(
            close_of(receiver).await,
            (Some(1000), "end of stream".into())
        );
    }
    for server in [&edge_a, &edge_b, &edge_c] {
        server
            .wait_metric("ws_stream_edge_pulls_ended_total{reason=\"end\"}", |v| {
                v == 1.0
            })
            .await;
        server.wait_metric(UPSTREAMS_STREAMING, |v| v == 0.0).await;
    }
    let log = edge_a.log_text();
    assert!(log.contains("pull start"), "{log}");
    let chosen = log
        .lines()
        .find(|l| l.contains("origin chosen"))
        .unwrap_or_else(|| panic!("no origin chosen line:\n{log}"));
    assert!(chosen.contains(&origin.addr.to_string()), "{chosen}");
    assert!(!chosen.contains("/k/"), "the key is never logged: {chosen}");
}

/// Late joiners on an edge whose 1 MiB cache was evicted decode from their join point.
async fn late_joiners_on_an_edge(name: &str, media: Vec<u8>) {
    let origin = origin();
    let edge = edge(&[&origin], &[("GOP_CACHE_SIZE_MB", "1")]);
    assert!(
        media.len() > 2 << 20,
        "{name}: media must overflow the edge's cache"
    );
    let (early, late) = publish_with_joiners(&origin, &edge, name, &media, "receive").await;
    assert!(
        early == media,
        "{name}: the edge's early receiver gets the exact stream"
    );
    assert!(late.len() >= 8, "{name}: joined {} times", late.len());
    let shorter = late.iter().filter(|s| s.len() < media.len()).count();
    assert!(shorter >= 4, "{name}: the edge's cache should have evicted");
    for (i, stream) in late.iter().enumerate() {
        let errors = decode_errors(stream);
        assert!(
            errors.is_empty(),
            "{name}: joiner {i} decode errors:\n{errors}"
        );
        assert!(
            first_frame_is_key(stream),
            "{name}: joiner {i} starts off a keyframe"
        );
    }
    // Every joiner played the one pull.
    assert_eq!(edge.metric(PULLS_STARTED), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiners_on_an_edge_decode_webm() {
    late_joiners_on_an_edge("vp8", webm_video("libvpx")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiners_on_an_edge_decode_fragmented_mp4() {
    late_joiners_on_an_edge("h264", fragmented_mp4()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_race_over_two_origins_keeps_the_one_with_the_publisher() {
    let empty = origin();
    let busy = origin();
    let edge = edge(&[&empty, &busy], &[]);
    let mut publisher = ws(&busy.url("/race/k/publish")).await;
    send(&mut publisher, b"before".to_vec()).await;
    let mut receiver = ws(&edge.url("/race/k/receive")).await;
    // The origin's cache is replayed through the edge.
    assert_eq!(next_binary(&mut receiver).await, b"before");
    send(&mut publisher, b"after".to_vec()).await;
    assert_eq!(next_binary(&mut receiver).await, b"after");
    // The other origin's attempt is closed once the publisher's origin delivered.
    empty.wait_connections("receive", 0).await;
    assert_eq!(receive_connections(&busy), 1.0);
    edge.wait_for_log("origin chosen").await;
    let log = edge.log_text();
    let chosen = log
        .lines()
        .find(|l| l.contains("origin chosen"))
        .unwrap_or_default();
    assert!(chosen.contains(&busy.addr.to_string()), "{chosen}");
    assert!(!chosen.contains(&empty.addr.to_string()), "{chosen}");
    close(publisher).await;
    assert_eq!(expect_close(&mut receiver).await, Some(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_down_at_first_is_retried_while_receivers_wait() {
    // A port nothing listens on, until the origin is started on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("ws://127.0.0.1:{port}");
    let edge = Server::process(&[("ORIGIN_URLS", url.as_str()), ("EDGE_RETRY_SECONDS", "1")]);
    let mut receiver = ws(&edge.url("/late/k/receive")).await;
    edge.wait_metric(
        "ws_stream_edge_upstream_failures_total{reason=\"connect\"}",
        |v| v >= 2.0,
    )
    .await;
    edge.wait_waiting(1).await;
    let port = port.to_string();
    let mut vars = ORIGIN.to_vec();
    vars.push(("HTTP_PORT", port.as_str()));
    let origin = Server::process(&vars);
    // The retry reaches it; the receiver waited through it all.
    origin.wait_waiting(1).await;
    let mut publisher = ws(&origin.url("/late/k/publish")).await;
    send(&mut publisher, b"up".to_vec()).await;
    assert_eq!(next_binary(&mut receiver).await, b"up");
    assert_eq!(edge.metric(PULLS_STARTED), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origins_key_verdict_is_relayed_and_a_pulls_key_binds_local_receivers() {
    let origin = origin();
    let edge = edge(&[&origin], &[]);
    // No publisher yet: two edge receivers with a wrong key wait behind one pull.
    let mut wrong = Vec::new();
    for _ in 0..2 {
        wrong.push(ws(&edge.url("/keyed/bad/receive")).await);
    }
    origin.wait_waiting(1).await;
    let mut publisher = ws(&origin.url("/keyed/good/publish")).await;
    send(&mut publisher, b"one".to_vec()).await;
    for receiver in &mut wrong {
        expect_invalid_key(receiver).await;
    }
    edge.wait_metric(
        "ws_stream_edge_pulls_ended_total{reason=\"invalid_key\"}",
        |v| v == 1.0,
    )
    .await;
    // Refused at once when the origin has the publisher already.
    let mut late_wrong = ws(&edge.url("/keyed/bad/receive")).await;
    expect_invalid_key(&mut late_wrong).await;
    // The right key starts a new pull.
    let mut right = ws(&edge.url("/keyed/good/receive")).await;
    assert_eq!(next_binary(&mut right).await, b"one");
    // Against an accepted pull, another key is refused on the edge itself.
    let before = edge.metric(PULLS_STARTED);
    let mut other = ws(&edge.url("/keyed/other/receive")).await;
    expect_invalid_key(&mut other).await;
    assert_eq!(edge.metric(PULLS_STARTED), before);
    assert_eq!(receive_connections(&origin), 1.0);
    send(&mut publisher, b"two".to_vec()).await;
    assert_eq!(next_binary(&mut right).await, b"two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_killed_mid_stream_closes_1011_origin_lost_then_a_receiver_pulls_again() {
    let doomed = origin();
    let spare = origin();
    let edge = edge(&[&doomed, &spare], &[("IDLE_TIMEOUT_SECONDS", "3")]);
    let mut publisher = ws(&doomed.url("/lost/k/publish")).await;
    send(&mut publisher, b"first".to_vec()).await;
    let mut receivers = Vec::new();
    for _ in 0..3 {
        let mut r = ws(&edge.url("/lost/k/receive")).await;
        assert_eq!(next_binary(&mut r).await, b"first");
        receivers.push(r);
    }
    edge.wait_metric(UPSTREAMS_STREAMING, |v| v == 1.0).await;
    // SIGKILL: no close frame, the kernel closes the sockets.
    drop(doomed);
    for r in &mut receivers {
        assert_eq!(close_of(r).await, (Some(1011), "origin lost".into()));
    }
    assert_eq!(
        edge.metric("ws_stream_edge_upstream_failures_total{reason=\"lost\"}"),
        1.0
    );
    edge.wait_for_log("origin lost").await;
    // The channel moves to the other origin; a reconnecting receiver starts a new pull.
    let mut publisher = ws(&spare.url("/lost/k/publish")).await;
    send(&mut publisher, b"again".to_vec()).await;
    let mut back = ws(&edge.url("/lost/k/receive")).await;
    assert_eq!(next_binary(&mut back).await, b"again");
    assert_eq!(edge.metric(PULLS_STARTED), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_lingers_after_the_last_receiver_then_closes() {
    let origin = origin();
    let edge = edge(&[&origin], &[("EDGE_LINGER_SECONDS", "3")]);
    let mut publisher = ws(&origin.url("/linger/k/publish")).await;
    send(&mut publisher, b"warm".to_vec()).await;
    let mut r = ws(&edge.url("/linger/k/receive")).await;
    assert_eq!(next_binary(&mut r).await, b"warm");
    close(r).await;
    edge.wait_playing(0).await;
    // During the linger: the upstream is open, a player that comes back joins it.
    assert_eq!(receive_connections(&origin), 1.0);
    let mut back = ws(&edge.url("/linger/k/receive")).await;
    assert_eq!(next_binary(&mut back).await, b"warm");
    assert_eq!(edge.metric(PULLS_STARTED), 1.0);
    close(back).await;
    // After it: closed.
    origin.wait_connections("receive", 0).await;
    assert_eq!(
        edge.metric("ws_stream_edge_pulls_ended_total{reason=\"linger\"}"),
        1.0
    );
    assert_eq!(edge.metric(UPSTREAMS_STREAMING), 0.0);
    drop(publisher);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulled_channel_refuses_publishers_and_a_local_publisher_is_never_pulled() {
    let origin = origin();
    let edge = edge(&[&origin], &[]);
    let _waiting = ws(&edge.url("/pulled/k/receive")).await;
    origin.wait_waiting(1).await;
    assert_eq!(
        try_ws(&edge.url("/pulled/k/publish")).await.err(),
        Some((403, "Already publishing.".to_owned()))
    );
    let mut local = ws(&edge.url("/local/k/publish")).await;
    send(&mut local, b"here".to_vec()).await;
    let mut r = ws(&edge.url("/local/k/receive")).await;
    assert_eq!(next_binary(&mut r).await, b"here");
    assert_eq!(edge.metric(PULLS_STARTED), 1.0);
    assert_eq!(receive_connections(&origin), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_clear_cache_and_probe_on_an_edge() {
    let origin = origin();
    let edge = edge(&[&origin], &[]);
    // A probe starts a pull and gets one chunk.
    let mut probe = ws(&edge.url("/pc/k/probe")).await;
    origin.wait_waiting(1).await;
    let mut publisher = ws(&origin.url("/pc/k/publish")).await;
    send(&mut publisher, b"c1".to_vec()).await;
    assert_eq!(next_binary(&mut probe).await, b"c1");
    assert_eq!(expect_close(&mut probe).await, Some(1000));
    // Within the linger the pull is still there: the clearing receiver gets the edge's cache
    // and clears it.
    let mut playing = ws(&edge.url("/pc/k/receive")).await;
    assert_eq!(next_binary(&mut playing).await, b"c1");
    send(&mut publisher, b"c2".to_vec()).await;
    assert_eq!(next_binary(&mut playing).await, b"c2");
    let mut clearing = ws(&edge.url("/pc/k/receive-clear-cache")).await;
    assert_eq!(read_bytes(&mut clearing, 4).await, b"c1c2");
    send(&mut publisher, b"c3".to_vec()).await;
    assert_eq!(next_binary(&mut clearing).await, b"c3");
    assert_eq!(next_binary(&mut playing).await, b"c3");
    // An opaque stream keeps no history after the clearing (PROTOCOL.md §2.5):
    // a joiner on the edge gets only what comes next.
    let started = edge.metric("ws_stream_receivers_started_total") as usize;
    let mut joiner = ws(&edge.url("/pc/k/receive")).await;
    let mut probe = ws(&edge.url("/pc/k/probe")).await;
    edge.wait_started(started + 2).await;
    send(&mut publisher, b"c4".to_vec()).await;
    assert_eq!(next_binary(&mut joiner).await, b"c4");
    assert_eq!(next_binary(&mut probe).await, b"c4");
    assert_eq!(expect_close(&mut probe).await, Some(1000));
    assert_eq!(edge.metric(PULLS_STARTED), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_receiver_on_an_edge_slows_neither_the_upstream_nor_the_others() {
    let origin = origin();
    let edge = edge(&[&origin], &[("RECEIVER_QUEUE_MB", "1")]);
    // Never read, with a small receive buffer: it falls behind at once.
    let _stuck = raw::RawWs::connect_with(edge.addr, "/stuck/k/receive", Some(4096)).await;
    let mut good = ws(&edge.url("/stuck/k/receive")).await;
    edge.wait_waiting(2).await;
    origin.wait_waiting(1).await;
    let stream = chunks(2, 200);
    let total: usize = stream.iter().map(Vec::len).sum();
    let expected = stream.concat();
    let mut publisher = ws(&origin.url("/stuck/k/publish")).await;
    let sender = tokio::spawn(async move {
        // Paced (about 15 MB/s) so that only the stuck receiver falls 1 MiB behind.
        for chunk in stream {
            send(&mut publisher, chunk).await;
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        publisher
    });
    assert!(read_bytes(&mut good, total).await == expected);
    let _publisher = sender.await.expect("publisher");
    edge.wait_metric("ws_stream_receivers_kicked_total", |v| v == 1.0)
        .await;
    // The edge's upstream kept up: the origin never had to close it.
    assert_eq!(origin.metric("ws_stream_receivers_kicked_total"), 0.0);
    assert_eq!(edge.metric(UPSTREAMS_STREAMING), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_edges_size_bound_counts_as_losing_the_origin() {
    let origin = origin();
    let edge = edge(&[&origin], &[("MAX_MESSAGE_SIZE_MB", "1")]);
    let mut publisher = ws(&origin.url("/big/k/publish")).await;
    send(&mut publisher, b"small".to_vec()).await;
    let mut r = ws(&edge.url("/big/k/receive")).await;
    assert_eq!(next_binary(&mut r).await, b"small");
    send(&mut publisher, vec![7; (1 << 20) + 1]).await;
    assert_eq!(close_of(&mut r).await, (Some(1011), "origin lost".into()));
    assert_eq!(
        edge.metric("ws_stream_edge_upstream_failures_total{reason=\"lost\"}"),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_shutting_down_is_lost_too() {
    let mut origin = origin();
    let edge = edge(&[&origin], &[]);
    let mut publisher = ws(&origin.url("/bye/k/publish")).await;
    send(&mut publisher, b"x".to_vec()).await;
    let mut r = ws(&edge.url("/bye/k/receive")).await;
    assert_eq!(next_binary(&mut r).await, b"x");
    // SIGTERM: the origin closes its receivers (the edge's upstream) with 1001.
    let stopper = std::thread::spawn(move || origin.stop());
    assert_eq!(close_of(&mut r).await, (Some(1011), "origin lost".into()));
    assert!(stopper.join().expect("stopped").success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_gone_silent_is_lost_after_the_idle_timeout() {
    // An origin that upgrades, sends one chunk, then neither sends nor reads
    // (so it answers no ping either): a hung machine.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("ws://{}", listener.local_addr().expect("address"));
    let hung = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut ws = tokio_tungstenite::accept_async(tcp).await.expect("upgrade");
        ws.send(Message::Binary(b"only".to_vec().into()))
            .await
            .expect("send");
        tokio::time::sleep(STEP * 2).await;
        drop(ws);
    });
    let edge = Server::process(&[
        ("ORIGIN_URLS", url.as_str()),
        ("IDLE_TIMEOUT_SECONDS", "2"),
        ("HEARTBEAT_SECONDS", "1"),
    ]);
    let r = ws(&edge.url("/hung/k/receive")).await;
    // The local receiver keeps itself alive under the edge's short idle timeout.
    let (mut tx, mut rx) = r.split();
    let pinger = tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            if tx.send(Message::Ping(Vec::new().into())).await.is_err() {
                return;
            }
        }
    });
    let mut got = Vec::new();
    let close = loop {
        let message = tokio::time::timeout(STEP, rx.next())
            .await
            .expect("no close in time");
        match message {
            Some(Ok(Message::Binary(b))) => got.extend_from_slice(&b),
            Some(Ok(Message::Close(frame))) => {
                break frame.map(|f| (u16::from(f.code), f.reason.to_string()))
            }
            Some(Ok(_)) => continue,
            other => panic!("expected the close, got {other:?}"),
        }
    };
    assert_eq!(got, b"only");
    assert_eq!(close, Some((1011, "origin lost".to_owned())));
    assert_eq!(
        edge.metric("ws_stream_edge_upstream_failures_total{reason=\"lost\"}"),
        1.0
    );
    pinger.abort();
    hung.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_kick_ends_a_pull() {
    let origin = origin();
    let edge = edge(&[&origin], &[("API_TOKEN", "secret")]);
    let mut publisher = ws(&origin.url("/kicked/k/publish")).await;
    send(&mut publisher, b"x".to_vec()).await;
    let mut r = ws(&edge.url("/kicked/k/receive")).await;
    assert_eq!(next_binary(&mut r).await, b"x");
    let request = "POST /api/channels/kicked/kick HTTP/1.1\r\nHost: x\r\n\
                   Authorization: Bearer secret\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let (status, _, body) = http(edge.metrics_addr(), request);
    assert_eq!(status, 204, "{body}");
    assert_eq!(expect_close(&mut r).await, Some(1000));
    edge.wait_metric("ws_stream_edge_pulls_ended_total{reason=\"killed\"}", |v| {
        v == 1.0
    })
    .await;
    origin.wait_connections("receive", 0).await;
}

#[test]
fn a_bad_origin_url_stops_the_start_naming_the_variable() {
    let (code, output) = run_to_exit(&[("ORIGIN_URLS", "ws://127.0.0.1:1,http://127.0.0.1:2")]);
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("ORIGIN_URLS"), "{output}");
}
