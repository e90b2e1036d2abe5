//! The stand-alone relay through the library's `run()` (docs/PROTOCOL.md §2.3–2.7): byte-exact
//! fan-out, the cache/live junction, the atomic claim, slow receivers, the
//! cache, publisher ends, heartbeats, idle timeout and the size bound.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// Numbered chunk: 8-byte sequence, 8-byte send time (µs since `epoch`), filler.
fn numbered(seq: u64, epoch: Instant, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len.max(16));
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&(epoch.elapsed().as_micros() as u64).to_be_bytes());
    v.resize(len.max(16), (seq % 251) as u8);
    v
}

fn seq_of(chunk: &[u8]) -> u64 {
    u64::from_be_bytes(chunk[..8].try_into().unwrap())
}

fn sent_at(chunk: &[u8]) -> u64 {
    u64::from_be_bytes(chunk[8..16].try_into().unwrap())
}

fn size_for(i: u64) -> usize {
    // Log-uniform between 1 B and 1 MiB.
    let r = payload(i, 8);
    let exp = (r[0] % 21) as u32;
    let base = 1usize << exp;
    (base + (u16::from_be_bytes([r[1], r[2]]) as usize % base)).min(1 << 20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_exact_fan_out_of_thousands_of_random_chunks() {
    let server = Server::start(&[("GOP_CACHE_SIZE_MB", "0"), ("RECEIVER_QUEUE_MB", "512")]);
    const CHUNKS: u64 = 2000;
    const RECEIVERS: usize = 3;
    let mut receivers = Vec::new();
    for _ in 0..RECEIVERS {
        receivers.push(ws(&server.url("/bytes/k/receive")).await);
    }
    let mut publisher = ws(&server.url("/bytes/k/publish")).await;
    server.wait_playing(RECEIVERS).await;
    let tasks: Vec<_> = receivers
        .into_iter()
        .map(|mut r| {
            tokio::spawn(async move {
                let mut total = 0usize;
                for i in 0..CHUNKS {
                    let got = next_binary(&mut r).await;
                    assert_eq!(got.len(), size_for(i), "chunk {i} length");
                    assert!(got == payload(i, size_for(i)), "chunk {i} content");
                    total += got.len();
                }
                total
            })
        })
        .collect();
    let mut sent = 0usize;
    for i in 0..CHUNKS {
        let data = payload(i, size_for(i));
        sent += data.len();
        send(&mut publisher, data).await;
    }
    for t in tasks {
        let got = tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("receiver finished in time")
            .expect("receiver ok");
        assert_eq!(got, sent);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junction_is_gap_free_for_receivers_joining_at_full_speed() {
    let server = Server::start(&[
        ("GOP_CACHE_SIZE_MB", "1"),
        ("MAX_IP_CONCURRENT_CONNECTIONS", "64"),
    ]);
    const CHUNKS: u64 = 20_000;
    let mut publisher = ws(&server.url("/junction/k/publish")).await;
    let url = server.url("/junction/k/receive");
    let joiner = tokio::spawn(async move {
        let mut handles = Vec::new();
        for j in 0..12u64 {
            tokio::time::sleep(Duration::from_millis(10 + payload(j, 1)[0] as u64 % 40)).await;
            let mut r = ws(&url).await;
            handles.push(tokio::spawn(async move {
                let first = seq_of(&next_binary(&mut r).await);
                let mut expected = first + 1;
                while expected < CHUNKS {
                    let seq = seq_of(&next_binary(&mut r).await);
                    assert_eq!(seq, expected, "receiver {j}: gap, duplicate or reorder");
                    expected += 1;
                }
                first
            }));
        }
        handles
    });
    let epoch = Instant::now();
    for seq in 0..CHUNKS {
        send(
            &mut publisher,
            numbered(seq, epoch, 100 + (seq as usize % 900)),
        )
        .await;
    }
    let handles = joiner.await.unwrap();
    assert_eq!(handles.len(), 12);
    for h in handles {
        tokio::time::timeout(Duration::from_secs(60), h)
            .await
            .expect("receiver finished")
            .expect("receiver saw a gap-free sequence");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_of_many_concurrent_publishers_is_accepted() {
    let server = Server::start(&[("CONCURRENT_LIMIT_WHITELIST", "127.0.0.1")]);
    for round in 0..5 {
        let url = server.url(&format!("/race{round}/k/publish"));
        let attempts: Vec<_> = (0..20)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { try_ws(&url).await })
            })
            .collect();
        let mut accepted = Vec::new();
        let mut refused = 0;
        for a in attempts {
            match a.await.unwrap() {
                Ok(ws) => accepted.push(ws),
                Err((403, body)) if body == "Already publishing." => refused += 1,
                Err(other) => panic!("unexpected answer {other:?}"),
            }
        }
        assert_eq!((accepted.len(), refused), (1, 19), "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_receiver_neither_delays_others_nor_grows_memory() {
    // The real process: its resident memory is what is measured.
    let server = Server::process(&[
        ("GOP_CACHE_SIZE_MB", "0"),
        ("RECEIVER_QUEUE_MB", "4"),
        ("MAX_IP_CONCURRENT_CONNECTIONS", "16"),
    ]);
    let mut publisher = ws(&server.url("/slow/k/publish")).await;
    let mut stuck = ws(&server.url("/slow/k/receive")).await;
    let mut healthy = Vec::new();
    for _ in 0..3 {
        healthy.push(ws(&server.url("/slow/k/receive")).await);
    }
    server.wait_playing(4).await;
    let rss_before = server.rss_kib();
    let epoch = Instant::now();
    let readers: Vec<_> = healthy
        .into_iter()
        .map(|mut r| {
            tokio::spawn(async move {
                let mut worst = 0u64;
                for seq in 0..400u64 {
                    let chunk = next_binary(&mut r).await;
                    assert_eq!(seq_of(&chunk), seq);
                    worst = worst.max(epoch.elapsed().as_micros() as u64 - sent_at(&chunk));
                }
                worst
            })
        })
        .collect();
    // 400 chunks of 64 KiB = 25 MiB, far over the stuck receiver's 4 MiB bound.
    for seq in 0..400u64 {
        send(&mut publisher, numbered(seq, epoch, 64 * 1024)).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for r in readers {
        let worst = tokio::time::timeout(Duration::from_secs(30), r)
            .await
            .unwrap()
            .unwrap();
        // Generous: a stall behind the stuck receiver would block for good.
        assert!(worst < 3_000_000, "healthy receiver delayed by {worst} µs");
    }
    server
        .wait_metric("ws_stream_receivers_kicked_total", |n| n == 1.0)
        .await;
    let rss_after = server.rss_kib();
    assert!(
        rss_after < rss_before + 64 * 1024,
        "server memory grew from {rss_before} KiB to {rss_after} KiB"
    );
    // The stuck receiver, read at last, gets a prefix of the stream in whole
    // messages and then the 1008 close frame.
    let mut last = None;
    loop {
        match next(&mut stuck).await {
            Got::Binary(chunk) => {
                let seq = seq_of(&chunk);
                assert_eq!(seq, last.map_or(0, |l| l + 1));
                last = Some(seq);
            }
            Got::Text(_) => {}
            Got::Closed(code) => {
                assert_eq!(code, Some(1008));
                break;
            }
        }
    }
    assert!(
        last.unwrap_or(0) < 399,
        "the stuck receiver should have been cut"
    );
}

#[tokio::test]
async fn cache_evicts_oldest_first() {
    let server = Server::start(&[("GOP_CACHE_SIZE_MB", "1")]);
    let mut publisher = ws(&server.url("/cache/k/publish")).await;
    let mut sync = ws(&server.url("/cache/k/receive")).await;
    for n in 1..=3u8 {
        send(&mut publisher, vec![n; 400 * 1024]).await;
    }
    send(&mut publisher, vec![4; 10]).await;
    // Once a receiver has the last chunk, the server has cached all of them.
    while next_binary(&mut sync).await != [4; 10] {}
    let mut r = ws(&server.url("/cache/k/receive")).await;
    // 3 * (400 KiB + 16) > 1 MiB: chunk 1 was evicted, 2, 3 and 4 fit.
    assert_eq!(next_binary(&mut r).await[0], 2);
    assert_eq!(next_binary(&mut r).await[0], 3);
    assert_eq!(next_binary(&mut r).await, [4; 10]);
    send(&mut publisher, vec![5]).await;
    assert_eq!(next_binary(&mut r).await, [5]);
}

#[tokio::test]
async fn zero_disables_the_cache() {
    let server = Server::start(&[("GOP_CACHE_SIZE_MB", "0")]);
    let mut publisher = ws(&server.url("/nocache/k/publish")).await;
    send(&mut publisher, vec![1]).await;
    server
        .wait_metric("ws_stream_chunks_in_total", |n| n == 1.0)
        .await;
    let mut r = ws(&server.url("/nocache/k/receive")).await;
    server.wait_playing(1).await;
    send(&mut publisher, vec![2]).await;
    assert_eq!(next_binary(&mut r).await, [2]);
}

#[tokio::test]
async fn clear_cache_then_a_second_receiver_gets_only_live() {
    let server = Server::start(&[]);
    let mut publisher = ws(&server.url("/clear/k/publish")).await;
    send(&mut publisher, vec![1]).await;
    send(&mut publisher, vec![2]).await;
    // Both cached before the encoder arrives, so its replay is what it clears.
    server
        .wait_metric("ws_stream_chunks_in_total", |n| n == 2.0)
        .await;
    let mut encoder = ws(&server.url("/clear/k/receive-clear-cache")).await;
    assert_eq!(next_binary(&mut encoder).await, [1]);
    assert_eq!(next_binary(&mut encoder).await, [2]);
    send(&mut publisher, vec![3]).await;
    assert_eq!(next_binary(&mut encoder).await, [3]);
    let mut late = ws(&server.url("/clear/k/receive")).await;
    server.wait_playing(2).await;
    send(&mut publisher, vec![4]).await;
    assert_eq!(next_binary(&mut late).await, [4], "cache should be empty");
    assert_eq!(next_binary(&mut encoder).await, [4]);
    // A probe now has no cached chunk: it gets the next live one.
    let mut probe = ws(&server.url("/clear/k/probe")).await;
    server.wait_playing(3).await;
    send(&mut publisher, vec![5]).await;
    assert_eq!(next_binary(&mut probe).await, [5]);
    assert_eq!(expect_close(&mut probe).await, Some(1000));
}

#[tokio::test]
async fn probe_gets_exactly_the_first_cached_chunk() {
    let server = Server::start(&[]);
    let mut publisher = ws(&server.url("/probe/k/publish")).await;
    send(&mut publisher, b"header".to_vec()).await;
    send(&mut publisher, b"media".to_vec()).await;
    let mut probe = ws(&server.url("/probe/k/probe")).await;
    assert_eq!(next_binary(&mut probe).await, b"header");
    assert_eq!(expect_close(&mut probe).await, Some(1000));
}

#[tokio::test]
async fn a_waiting_probe_and_receiver_get_the_stream_from_its_first_chunk() {
    let server = Server::start(&[]);
    let mut probe = ws(&server.url("/wait/k/probe")).await;
    let mut encoder = ws(&server.url("/wait/k/receive-clear-cache")).await;
    server.wait_waiting(2).await;
    let mut publisher = ws(&server.url("/wait/k/publish")).await;
    send(&mut publisher, b"first".to_vec()).await;
    send(&mut publisher, b"second".to_vec()).await;
    assert_eq!(next_binary(&mut probe).await, b"first");
    assert_eq!(expect_close(&mut probe).await, Some(1000));
    assert_eq!(next_binary(&mut encoder).await, b"first");
    assert_eq!(next_binary(&mut encoder).await, b"second");
    // The waiting clear-cache receiver had nothing to replay and cleared nothing.
    let mut late = ws(&server.url("/wait/k/receive")).await;
    assert_eq!(next_binary(&mut late).await, b"first");
}

#[tokio::test]
async fn publisher_end_closes_active_receivers_and_idle_ones_wait_for_the_next() {
    let server = Server::start(&[("IDLE_TIMEOUT_SECONDS", "2"), ("HEARTBEAT_SECONDS", "5")]);
    for how in ["close", "reset", "idle"] {
        let path = format!("/end-{how}/k");
        let mut publisher = ws(&server.url(&format!("{path}/publish"))).await;
        send(&mut publisher, vec![1]).await;
        if how == "idle" {
            // Join late enough that the publisher times out well before this receiver would.
            tokio::time::sleep(Duration::from_millis(1200)).await;
        }
        let mut active = ws(&server.url(&format!("{path}/receive"))).await;
        assert_eq!(next_binary(&mut active).await, [1]);
        match how {
            "close" => close(publisher).await,
            "reset" => reset(publisher),
            _ => {
                // Silent for IDLE_TIMEOUT_SECONDS: the server closes it (1008).
                let code = tokio::time::timeout(STEP, async {
                    loop {
                        match publisher.next().await {
                            Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
                            Some(Ok(_)) => continue,
                            _ => return None,
                        }
                    }
                })
                .await
                .expect("idle publisher closed");
                assert_eq!(code, Some(1008));
            }
        }
        assert_eq!(expect_close(&mut active).await, Some(1000), "{how}");
        // A receiver arriving now waits, alive, and starts with the next publisher.
        let mut idle = ws(&server.url(&format!("{path}/receive"))).await;
        let mut wrong = ws(&server.url(&format!("{path}x/receive"))).await;
        drop(wrong);
        wrong = ws(&server.url(&format!("/end-{how}/wrong/receive"))).await;
        // Both wait, alive, for the next publisher.
        server.wait_waiting(2).await;
        let mut next_pub = wait_publish(&server, &format!("{path}/publish")).await;
        send(&mut next_pub, vec![2]).await;
        assert_eq!(next_binary(&mut idle).await, [2], "{how}");
        assert_eq!(
            next(&mut wrong).await,
            Got::Text("ERROR: Invalid streaming key".into())
        );
        assert_eq!(expect_close(&mut wrong).await, Some(1008));
        close(next_pub).await;
    }
}

/// Publishes once the previous publisher's claim is released.
async fn wait_publish(server: &Server, path: &str) -> Ws {
    server.wait_connections("publish", 0).await;
    ws(&server.url(path)).await
}

#[tokio::test]
async fn wrong_key_with_an_active_publisher_gets_the_error_text() {
    let server = Server::start(&[]);
    let _publisher = ws(&server.url("/keys/right/publish")).await;
    for kind in ["receive", "receive-clear-cache", "probe"] {
        let mut r = ws(&server.url(&format!("/keys/wrong/{kind}"))).await;
        assert_eq!(
            next(&mut r).await,
            Got::Text("ERROR: Invalid streaming key".into())
        );
        assert_eq!(expect_close(&mut r).await, Some(1008));
    }
}

/// The default timers, on tokio's paused clock: a heartbeat every 20 s, and a
/// client silent for 60 s closed with 1008; talking (pings included) keeps a
/// client open.
#[tokio::test(start_paused = true)]
async fn heartbeats_every_20_s_and_silent_clients_closed_after_60_s() {
    let server = Server::start_here(&[]).await;
    let long = Duration::from_secs(120);
    let mut publisher = ws(&server.url("/hb/k/publish")).await;
    let mut silent = ws(&server.url("/hb/k/receive")).await;
    let chatty = ws(&server.url("/hb-other/k/receive")).await;
    let started = tokio::time::Instant::now();
    assert_eq!(
        next_within(&mut publisher, long).await,
        Some(Got::Text("h".into()))
    );
    let first = started.elapsed();
    assert!(
        first >= Duration::from_secs(20) && first < Duration::from_secs(21),
        "first heartbeat after {first:?}"
    );
    let watcher = tokio::spawn(async move {
        let mut beats = 0;
        loop {
            match next_within(&mut silent, long).await {
                Some(Got::Text(t)) if t == "h" => beats += 1,
                Some(Got::Closed(code)) => return (code, started.elapsed(), beats),
                other => panic!("silent receiver got {other:?}"),
            }
        }
    });
    let (mut chatty, mut chatty_in) = chatty.split();
    let chatty_watcher = tokio::spawn(async move {
        // Heartbeats keep coming while it talks; it is never closed.
        loop {
            match tokio::time::timeout(long, chatty_in.next()).await {
                Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "h" => {
                    if started.elapsed() > Duration::from_secs(100) {
                        return;
                    }
                }
                Ok(Some(Ok(Message::Pong(_)))) => {}
                other => panic!("chatty receiver should stay open, got {other:?}"),
            }
        }
    });
    // The publisher and the chatty receiver talk every 10 s for 100 s.
    for i in 0..10 {
        let msg = if i % 2 == 0 {
            Message::Text("h".into())
        } else {
            Message::Ping(vec![1].into())
        };
        chatty.send(msg).await.unwrap();
        publisher.send(Message::Text("h".into())).await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    let (code, closed_at, beats) = watcher.await.unwrap();
    assert_eq!(code, Some(1008));
    assert!(
        closed_at >= Duration::from_secs(60) && closed_at < Duration::from_secs(61),
        "silent receiver closed after {closed_at:?}"
    );
    // Heartbeats at 20 s and 40 s, and the one due at 60 s when it wins the race with the close.
    assert!(
        (2..=3).contains(&beats),
        "{beats} heartbeats before the close"
    );
    // Still talking, the chatty one gets its heartbeat after 100 s.
    chatty.send(Message::Text("h".into())).await.unwrap();
    chatty_watcher.await.unwrap();
}

#[tokio::test]
async fn oversized_messages_close_with_1009() {
    let server = Server::start(&[("MAX_MESSAGE_SIZE_MB", "1"), ("MAX_CLIENT_MESSAGE_KB", "4")]);
    let mut publisher = ws(&server.url("/big/k/publish")).await;
    send(&mut publisher, vec![0; 1 << 20]).await;
    let mut receiver = ws(&server.url("/big/k/receive")).await;
    assert_eq!(
        next_binary(&mut receiver).await.len(),
        1 << 20,
        "exactly the bound is fine"
    );
    let _ = publisher
        .send(Message::Binary(vec![0; (1 << 20) + 1].into()))
        .await;
    assert_eq!(expect_close(&mut publisher).await, Some(1009));
    let mut chatty = ws(&server.url("/big2/k/receive")).await;
    let _ = chatty.send(Message::Text("x".repeat(5000).into())).await;
    assert_eq!(expect_close(&mut chatty).await, Some(1009));
    assert_eq!(get(server.addr, "/").0, 200, "server fine");
    let _again = ws(&server.url("/big/k/publish")).await;
}

#[tokio::test]
async fn fragmented_messages_become_one_chunk_with_pings_between() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    let server = Server::start(&[]);
    let mut publisher = ws(&server.url("/frag/k/publish")).await;
    let mut receiver = ws(&server.url("/frag/k/receive")).await;
    server.wait_playing(1).await;
    let part =
        |data: &[u8], opcode, fin| Message::Frame(Frame::message(data.to_vec(), opcode, fin));
    publisher
        .send(part(&[1, 2], OpCode::Data(Data::Binary), false))
        .await
        .unwrap();
    publisher
        .send(Message::Ping(vec![9, 8].into()))
        .await
        .unwrap();
    publisher
        .send(part(&[3], OpCode::Data(Data::Continue), false))
        .await
        .unwrap();
    publisher
        .send(part(&[4, 5], OpCode::Data(Data::Continue), true))
        .await
        .unwrap();
    assert_eq!(next_binary(&mut receiver).await, [1, 2, 3, 4, 5]);
    // The ping is answered with its own payload.
    let pong = tokio::time::timeout(STEP, async {
        loop {
            match publisher.next().await {
                Some(Ok(Message::Pong(p))) => return p.to_vec(),
                Some(Ok(_)) => continue,
                other => panic!("no pong: {other:?}"),
            }
        }
    })
    .await
    .expect("pong in time");
    assert_eq!(pong, [9, 8]);
}

#[tokio::test]
async fn a_receiver_that_sends_data_stays_correct() {
    let server = Server::start(&[]);
    let mut publisher = ws(&server.url("/chatty/k/publish")).await;
    let mut receiver = ws(&server.url("/chatty/k/receive")).await;
    server.wait_playing(1).await;
    // Large messages from a receiver are read and ignored; pings after them still get pongs.
    for i in 0..5u8 {
        receiver
            .send(Message::Binary(vec![i; 60_000].into()))
            .await
            .unwrap();
    }
    receiver.send(Message::Text("h".into())).await.unwrap();
    receiver
        .send(Message::Ping(vec![4, 2].into()))
        .await
        .unwrap();
    send(&mut publisher, vec![7; 10]).await;
    let mut got_chunk = false;
    let mut got_pong = false;
    let deadline = Instant::now() + STEP;
    while !(got_chunk && got_pong) && Instant::now() < deadline {
        match tokio::time::timeout(STEP, receiver.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => {
                assert_eq!(b.to_vec(), vec![7; 10]);
                got_chunk = true;
            }
            Ok(Some(Ok(Message::Pong(p)))) => {
                assert_eq!(p.to_vec(), vec![4, 2]);
                got_pong = true;
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("receiver ended: {other:?}"),
        }
    }
    assert!(got_chunk && got_pong);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kicked_receiver_gets_whole_frames_then_1008() {
    // A paced publisher of 1 MiB chunks, a receiver with a small socket buffer that
    // reads slowly: it falls over its 2 MiB bound while the server is mid-frame. Ten
    // healthy receivers keep it within a tenth, so the ingest hold does not wait for it.
    let server = Server::start(&[
        ("GOP_CACHE_SIZE_MB", "0"),
        ("RECEIVER_QUEUE_MB", "2"),
        ("MAX_IP_CONCURRENT_CONNECTIONS", "16"),
    ]);
    let mut publisher = ws(&server.url("/kick/k/publish")).await;
    let mut receiver =
        common::raw::RawWs::connect_with(server.addr, "/kick/k/receive", Some(32 * 1024)).await;
    receiver.slow(16 * 1024, Duration::from_millis(1));
    let mut healthy = Vec::new();
    for _ in 0..10 {
        let mut r = ws(&server.url("/kick/k/receive")).await;
        healthy.push(tokio::spawn(async move {
            for seq in 0..32u64 {
                assert_eq!(seq_of(&next_binary(&mut r).await), seq);
            }
        }));
    }
    server.wait_playing(11).await;
    let epoch = Instant::now();
    let sender = tokio::spawn(async move {
        for seq in 0..32u64 {
            send(&mut publisher, numbered(seq, epoch, 1 << 20)).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        publisher
    });
    // Every frame whole (the raw reader panics on a frame cut short), in order, then 1008.
    let mut seq = 0;
    let code = loop {
        let frame = receiver
            .read_frame()
            .await
            .expect("a close frame before the end");
        match frame.opcode() {
            0x2 => {
                assert_eq!(frame.payload.len(), 1 << 20);
                assert_eq!(seq_of(&frame.payload), seq);
                seq += 1;
            }
            0x8 => break frame.close_code(),
            _ => {}
        }
    };
    assert_eq!(code, Some(1008), "after {seq} chunks");
    assert!(seq < 32, "the receiver should have been cut");
    assert!(receiver.ends().await);
    assert_eq!(server.metric("ws_stream_receivers_kicked_total"), 1.0);
    let _publisher = tokio::time::timeout(STEP * 3, sender)
        .await
        .unwrap()
        .unwrap();
    for h in healthy {
        tokio::time::timeout(STEP * 3, h).await.unwrap().unwrap();
    }
}
