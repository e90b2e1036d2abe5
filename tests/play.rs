//! `GET|HEAD /{channel}/{key}/play` (docs/PROTOCOL.md §2.8): real players
//! (ffmpeg, ffprobe) decode the stream joined late after cache eviction; the
//! answers of every refusal; HEAD; a reader that stops reading is cut at its
//! bound while the others are not. Needs ffmpeg; fails loudly without it.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::http::{self as client, BodyEnd};
use common::media::*;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs ffmpeg or ffprobe (reading a URL) on a blocking thread; (success, stdout, stderr).
async fn tool(tool: &'static str, args: Vec<String>) -> (bool, Vec<u8>, String) {
    let run = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_tool(tool, &args, &[])
    });
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the tool ended in time")
        .expect("tool thread")
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

/// Publishes `media` cut in chunks; once more than the 1 MiB cache is out,
/// ffmpeg (`-t 5`), ffprobe and a plain client join over HTTP. Each must decode
/// cleanly, from a keyframe, with the scanner's content type.
async fn play_late(name: &str, media: Vec<u8>, content_type: &str, codecs: &str) {
    let server = Server::start(&[
        ("GOP_CACHE_SIZE_MB", "1"),
        ("MAX_IP_CONCURRENT_CONNECTIONS", "64"),
    ]);
    let url = format!("http://{}/{name}/k/play", server.addr);
    let chunks = cut(&media, name.len() as u64 * 31);
    let early = chunks.len() * 3 / 5;
    let mut publisher = ws(&server.url(&format!("/{name}/k/publish"))).await;
    let sent: usize = chunks[..early].iter().map(Vec::len).sum();
    assert!(
        sent > 3 << 19,
        "{name}: {sent} bytes before the join must overflow the 1 MiB cache"
    );
    for chunk in &chunks[..early] {
        send(&mut publisher, chunk.clone()).await;
    }
    // All in the log (counted once appended) before anyone joins.
    server
        .wait_metric("ws_stream_chunks_in_total", |n| n == early as f64)
        .await;
    let started = server.metric("ws_stream_receivers_started_total") as usize;
    let ffmpeg = tokio::spawn(tool(
        "ffmpeg",
        strings(&[
            "-v", "error", "-nostdin", "-i", &url, "-t", "5", "-f", "null", "-",
        ]),
    ));
    let ffprobe = tokio::spawn(tool(
        "ffprobe",
        strings(&[
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
            &url,
        ]),
    ));
    let plain = client::get(server.addr, &format!("/{name}/k/play")).await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-type"), Some(content_type));
    assert_eq!(plain.header("cache-control"), Some("no-store"));
    assert_eq!(plain.header("access-control-allow-origin"), Some("*"));
    assert_eq!(plain.header("transfer-encoding"), Some("chunked"));
    let plain = tokio::spawn(plain.collect());
    server.wait_started(started + 3).await;
    // The rest at about four times real time.
    let rest = &chunks[early..];
    let pause = Duration::from_micros(3_000_000 / rest.len() as u64);
    for chunk in rest {
        send(&mut publisher, chunk.clone()).await;
        tokio::time::sleep(pause).await;
    }
    close(publisher).await;
    let (ok, _, err) = ffmpeg.await.expect("ffmpeg task");
    assert!(ok && err.is_empty(), "{name}: ffmpeg -i {url}: {err}");
    let (ok, out, err) = ffprobe.await.expect("ffprobe task");
    let found = String::from_utf8_lossy(&out).replace('\n', " ");
    assert!(ok && err.is_empty(), "{name}: ffprobe {url}: {err}");
    assert_eq!(found.trim(), codecs, "{name}: ffprobe's streams");
    let (body, end) = plain.await.expect("plain reader");
    assert_eq!(end, BodyEnd::Clean, "{name}: the body ends with the stream");
    assert!(
        body.len() < media.len() - sent + (1 << 20),
        "{name}: joined late"
    );
    assert_eq!(decode_errors(&body), "", "{name}: the plain reader's body");
    assert!(first_frame_is_key(&body), "{name}: starts at a keyframe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webm_vp8_opus_plays_late() {
    play_late("vp8", webm_video("libvpx"), "video/webm", "vp8 opus").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webm_vp9_opus_plays_late() {
    play_late("vp9", webm_video("libvpx-vp9"), "video/webm", "vp9 opus").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_mp4_h264_aac_plays_late() {
    let media = fragmented_mp4_of(20);
    play_late("h264", media, "video/mp4", "h264 aac").await;
}

/// A publisher on `path` that has sent `chunks`.
async fn publishing(server: &Server, path: &str, chunks: &[Vec<u8>]) -> Ws {
    let mut publisher = ws(&server.url(path)).await;
    for chunk in chunks {
        send(&mut publisher, chunk.clone()).await;
    }
    publisher
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_answer_before_any_body_byte() {
    let server = Server::start(&[
        ("PLAY_WAIT_SECONDS", "1"),
        ("MAX_IP_CONCURRENT_CONNECTIONS", "3"),
    ]);
    // No publisher within the wait.
    let answer = client::get(server.addr, "/none/k/play").await;
    assert_eq!(
        (answer.status, answer.text().await.as_str()),
        (404, "Not publishing.")
    );
    server
        .wait_metric(
            "ws_stream_requests_refused_total{reason=\"not_publishing\"}",
            |n| n == 1.0,
        )
        .await;
    // Wrong key, with the publisher there and with a reader that waited for it.
    let publisher = publishing(&server, "/c/k/publish", &[payload(1, 100)]).await;
    let answer = client::get(server.addr, "/c/bad/play").await;
    assert_eq!(
        (answer.status, answer.text().await.as_str()),
        (403, "Invalid streaming key.")
    );
    let waiting = tokio::spawn(client::get(server.addr, "/late/bad/play"));
    server.wait_waiting(1).await;
    let late = publishing(&server, "/late/k/publish", &[payload(2, 100)]).await;
    let answer = waiting.await.expect("waiting reader");
    assert_eq!(
        (answer.status, answer.text().await.as_str()),
        (403, "Invalid streaming key.")
    );
    // The per-IP limit: two publishers and one reader hold the three slots.
    let reader = client::get(server.addr, "/c/k/play").await;
    assert_eq!(reader.status, 200);
    let answer = client::get(server.addr, "/c/k/play").await;
    assert_eq!(
        (answer.status, answer.text().await.as_str()),
        (429, "Too many requests.")
    );
    drop(reader);
    server.wait_ip_slots("127.0.0.1".parse().unwrap(), 2).await;
    // Only GET and HEAD.
    let io = client::connect(server.addr, None).await;
    let answer = client::request(io, "POST", "/c/k/play").await;
    assert_eq!(answer.status, 405);
    // Other kinds are still refused as before.
    let answer = client::get(server.addr, "/c/k/playback").await;
    assert_eq!(
        (answer.status, answer.text().await.as_str()),
        (404, "Invalid connection kind.")
    );
    close(publisher).await;
    close(late).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_play_whitelist_applies() {
    let server = Server::start(&[("PLAY_WHITELIST", "10.1.2.3")]);
    let publisher = publishing(&server, "/c/k/publish", &[payload(1, 100)]).await;
    let answer = client::get(server.addr, "/c/k/play").await;
    assert_eq!(
        (answer.status, answer.text().await.as_str()),
        (403, "Cannot play: Not whitelisted.")
    );
    close(publisher).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_answers_the_headers_only_and_opaque_streams_play_byte_exact() {
    let server = Server::start(&[]);
    let webm = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/chromium-mediarecorder-vp8-opus.webm"
    ))
    .expect("the Chromium fixture in tests/fixtures");
    let publisher = publishing(&server, "/w/k/publish", &cut(&webm, 5)[..4]).await;
    let io = client::connect(server.addr, None).await;
    let head = client::request(io, "HEAD", "/w/k/play").await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("video/webm"));
    assert_eq!(head.header("cache-control"), Some("no-store"));
    assert_eq!(head.header("access-control-allow-origin"), Some("*"));
    assert_eq!(head.collect().await, (Vec::new(), BodyEnd::Clean));
    close(publisher).await;
    // Bytes the scanner does not know: octet-stream, from the first cached chunk.
    let chunks: Vec<Vec<u8>> = (0..20).map(|i| payload(i, 1000 + i as usize)).collect();
    let mut publisher = publishing(&server, "/o/k/publish", &chunks[..10]).await;
    let reader = client::get(server.addr, "/o/k/play").await;
    assert_eq!(
        reader.header("content-type"),
        Some("application/octet-stream")
    );
    let reader = tokio::spawn(reader.collect());
    for chunk in &chunks[10..] {
        send(&mut publisher, chunk.clone()).await;
    }
    close(publisher).await;
    let (body, end) = reader.await.expect("reader");
    assert_eq!(end, BodyEnd::Clean);
    assert!(body == chunks.concat(), "byte-exact");
    server.wait_connections("play", 0).await;
    server.wait_ip_slots("127.0.0.1".parse().unwrap(), 0).await;
}

/// Reads a body as it comes, counting its bytes in `got`.
async fn count_play(answer: client::Answer, got: Arc<AtomicUsize>) -> (usize, BodyEnd) {
    let mut answer = answer;
    loop {
        match answer.next_data().await {
            Some(Ok(data)) => {
                got.fetch_add(data.len(), Ordering::Relaxed);
            }
            Some(Err(_)) => return (got.load(Ordering::Relaxed), BodyEnd::Cut),
            None => return (got.load(Ordering::Relaxed), BodyEnd::Clean),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_cut_and_the_others_play_on() {
    let server = Server::start(&[
        ("GOP_CACHE_SIZE_MB", "0"),
        ("RECEIVER_QUEUE_MB", "1"),
        ("MAX_IP_CONCURRENT_CONNECTIONS", "16"),
    ]);
    let mut publisher = ws(&server.url("/s/k/publish")).await;
    send(&mut publisher, payload(0, 1000)).await;
    // In the log (counted once appended) before any reader comes.
    server
        .wait_metric("ws_stream_chunks_in_total", |n| n == 1.0)
        .await;
    // Asks and never reads again.
    let mut stuck = client::connect(server.addr, Some(8 * 1024)).await;
    stuck
        .write_all(b"GET /s/k/play HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    let healthy_got = Arc::new(AtomicUsize::new(0));
    let healthy = client::get(server.addr, "/s/k/play").await;
    let healthy = tokio::spawn(count_play(healthy, healthy_got.clone()));
    let ws_got = Arc::new(AtomicUsize::new(0));
    let mut receiver = ws(&server.url("/s/k/receive")).await;
    let ws_count = ws_got.clone();
    let ws_reader = tokio::spawn(async move {
        loop {
            match next(&mut receiver).await {
                Got::Binary(b) => {
                    ws_count.fetch_add(b.len(), Ordering::Relaxed);
                }
                Got::Text(_) => {}
                Got::Closed(code) => return code,
            }
        }
    });
    server.wait_playing(3).await;
    // 24 MiB, far over the stuck reader's 1 MiB bound; the healthy ones keep up.
    // The first chunk predates the readers (no cache): they get what follows.
    let mut sent = 0;
    for seq in 1..=384u64 {
        let chunk = payload(seq, 64 * 1024);
        sent += chunk.len();
        send(&mut publisher, chunk).await;
        if seq % 4 == 0 {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while healthy_got.load(Ordering::Relaxed) < sent
                || ws_got.load(Ordering::Relaxed) < sent
            {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "healthy readers stalled: {} and {} of {sent}:\n{}",
                    healthy_got.load(Ordering::Relaxed),
                    ws_got.load(Ordering::Relaxed),
                    server.metrics_text()
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    server
        .wait_metric("ws_stream_receivers_kicked_total", |n| n == 1.0)
        .await;
    server.wait_connections("play", 1).await;
    close(publisher).await;
    let (got, end) = healthy.await.expect("healthy play reader");
    assert_eq!((got, end), (sent, BodyEnd::Clean));
    let code = ws_reader.await.expect("ws reader");
    assert_eq!(code, Some(1000));
    assert_eq!(ws_got.load(Ordering::Relaxed), sent);
    // The stuck reader, read at last: a prefix, then the connection's end without the last chunk.
    let mut all = Vec::new();
    loop {
        let mut buf = vec![0u8; 64 * 1024];
        let n = tokio::time::timeout(STEP, stuck.read(&mut buf))
            .await
            .expect("the cut connection ends")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
    }
    assert!(all.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(all.len() < sent, "{} of {sent} bytes", all.len());
    assert!(!all.ends_with(b"\r\n0\r\n\r\n"), "no last chunk");
    assert_eq!(server.metric("ws_stream_receivers_kicked_total"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorisation_callback_decides_play_when_listed() {
    use common::hook::{Hook, Reply};
    let mut hook = Hook::start(Reply::AllowKey("good")).await;
    let url = hook.url("/auth");
    let server = Server::start(&[("AUTH_HTTP_URL", url.as_str()), ("AUTH_HTTP_KINDS", "play")]);
    // The publisher is not asked (only `play` is listed).
    let publisher = publishing(&server, "/c/good/publish", &[payload(1, 100)]).await;
    let reader = client::get(server.addr, "/c/good/play").await;
    assert_eq!(reader.status, 200);
    let asked = hook.recv().await;
    assert_eq!(
        (&asked.body["action"], &asked.body["channel"]),
        (&serde_json::json!("play"), &serde_json::json!("c"))
    );
    hook.set(Reply::Status(403));
    let denied = client::get(server.addr, "/c/good/play").await;
    assert_eq!(
        (denied.status, denied.text().await.as_str()),
        (403, "Invalid Key.")
    );
    assert_eq!(hook.count(), 2);
    drop(reader);
    close(publisher).await;
}
