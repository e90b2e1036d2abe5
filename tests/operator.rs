//! Operator control without the coordinator (issue 18): the authorisation
//! callback, the event webhook and the JSON API, against real HTTP endpoints
//! on loopback.

mod common;

use std::time::{Duration, Instant};

use common::hook::{Hook, Recorded, Reply};
use common::*;

const REFUSED: (u16, &str) = (403, "Invalid Key.");

async fn refused(url: &str) -> (u16, String) {
    match try_ws(url).await {
        Ok(_) => panic!("{url} was accepted"),
        Err(answer) => answer,
    }
}

fn is_refused(answer: &(u16, String)) -> bool {
    (answer.0, answer.1.as_str()) == REFUSED
}

/// The body names exactly these fields; the id is the session's number.
fn assert_body(r: &Recorded, action: &str, channel: &str, key: &str) {
    let body = r.body.as_object().expect("a JSON object");
    let mut names: Vec<&str> = body.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["action", "channel", "id", "ip", "key"], "{}", r.raw);
    assert_eq!(body["action"], action);
    assert_eq!(body["channel"], channel);
    assert_eq!(body["key"], key);
    assert_eq!(body["ip"], "127.0.0.1");
    assert!(body["id"].as_u64().is_some_and(|id| id > 0), "{}", r.raw);
    assert_eq!(r.method, "POST");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(
        !r.target.contains(key),
        "the key is in the URL: {}",
        r.target
    );
}

#[tokio::test]
async fn callback_allows_on_2xx_denies_otherwise_with_the_exact_body() {
    let mut hook = Hook::start(Reply::AllowKey("good-key")).await;
    let url = hook.url("/auth/check?site=1");
    let server = Server::start(&[
        ("AUTH_HTTP_URL", url.as_str()),
        ("METRICS_ADDRESS", "127.0.0.1:0"),
    ]);
    let publisher = ws(&server.url("/cam/good-key/publish")).await;
    let r = hook.recv().await;
    assert_eq!(r.target, "/auth/check?site=1");
    assert_body(&r, "publish", "cam", "good-key");
    assert!(r.header("host").is_some_and(|h| h == hook.addr.to_string()));
    assert_eq!(r.header("authorization"), None);
    drop(publisher);
    server.wait_channel_free("cam").await;
    assert!(is_refused(
        &refused(&server.url("/cam/bad-key/publish")).await
    ));
    assert_body(&hook.recv().await, "publish", "cam", "bad-key");
    for status in [201, 204, 299] {
        hook.set(Reply::Status(status));
        let p = ws(&server.url("/cam/any/publish")).await;
        drop(p);
        server.wait_channel_free("cam").await;
    }
    for status in [301, 400, 401, 404, 500, 503] {
        hook.set(Reply::Status(status));
        let answer = refused(&server.url("/cam/any/publish")).await;
        assert!(is_refused(&answer), "{status}: {answer:?}");
    }
    assert_eq!(
        server.metric("ws_stream_auth_requests_total{outcome=\"allowed\"}"),
        4.0
    );
    assert_eq!(
        server.metric("ws_stream_auth_requests_total{outcome=\"denied\"}"),
        7.0
    );
    assert_eq!(server.metric("ws_stream_auth_duration_seconds_count"), 11.0);
}

#[tokio::test]
async fn credentials_in_the_url_are_sent_as_basic_auth_never_in_the_target() {
    let mut hook = Hook::start(Reply::Status(204)).await;
    let url = format!("http://us%65r:p%40ss:w0rd@{}/auth", hook.addr);
    let events = format!("http://hooks:s3cret@{}/events", hook.addr);
    let server = Server::start(&[
        ("AUTH_HTTP_URL", url.as_str()),
        ("EVENT_WEBHOOK_URL", events.as_str()),
    ]);
    let _publisher = ws(&server.url("/cam/k/publish")).await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let r = hook.recv().await;
        assert!(!r.target.contains('@'), "{}", r.target);
        assert!(r.header("host").is_some_and(|h| h == hook.addr.to_string()));
        seen.push((
            r.target.clone(),
            r.header("authorization").map(str::to_owned),
        ));
    }
    seen.sort();
    // "user:p@ss:w0rd" and "hooks:s3cret", base64.
    assert_eq!(
        seen,
        [
            (
                "/auth".to_owned(),
                Some("Basic dXNlcjpwQHNzOncwcmQ=".to_owned())
            ),
            (
                "/events".to_owned(),
                Some("Basic aG9va3M6czNjcmV0".to_owned())
            ),
        ]
    );
}

#[tokio::test]
async fn callback_timeout_slow_answer_and_refused_connection_deny() {
    let hook = Hook::start(Reply::Hang).await;
    let url = hook.url("/auth");
    let server = Server::start(&[
        ("AUTH_HTTP_URL", url.as_str()),
        ("AUTH_HTTP_TIMEOUT_SECONDS", "1"),
    ]);
    let started = Instant::now();
    assert!(is_refused(&refused(&server.url("/a/k/publish")).await));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(950), "{waited:?}");
    // Slow: an answer that would allow, but after the timeout (the outcome
    // counted below is the timeout, not the late answer).
    hook.set(Reply::Delay(Duration::from_secs(2)));
    assert!(is_refused(&refused(&server.url("/a/k/publish")).await));
    assert_eq!(
        server.metric("ws_stream_auth_requests_total{outcome=\"timeout\"}"),
        2.0
    );

    // Nothing listens: connection refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/auth", closed.local_addr().unwrap());
    drop(closed);
    let server = Server::start(&[("AUTH_HTTP_URL", dead.as_str())]);
    assert!(is_refused(&refused(&server.url("/a/k/publish")).await));
    assert_eq!(
        server.metric("ws_stream_auth_requests_total{outcome=\"error\"}"),
        1.0
    );
}

#[tokio::test]
async fn every_listed_kind_asks_with_its_action() {
    let mut hook = Hook::start(Reply::AllowKey("k1")).await;
    let url = hook.url("/auth");
    let server = Server::start(&[
        ("AUTH_HTTP_URL", url.as_str()),
        (
            "AUTH_HTTP_KINDS",
            "publish, receive,receive-clear-cache,probe",
        ),
        ("MAX_IP_CONCURRENT_CONNECTIONS", "16"),
    ]);
    let mut publisher = ws(&server.url("/ch/k1/publish")).await;
    assert_body(&hook.recv().await, "publish", "ch", "k1");
    send(&mut publisher, vec![1, 2, 3]).await;
    let mut open = Vec::new();
    for kind in ["receive", "probe", "receive-clear-cache"] {
        let mut r = ws(&server.url(&format!("/ch/k1/{kind}"))).await;
        assert_body(&hook.recv().await, kind, "ch", "k1");
        assert_eq!(next_binary(&mut r).await, vec![1, 2, 3]);
        open.push(r);
        assert!(is_refused(
            &refused(&server.url(&format!("/ch/k2/{kind}"))).await
        ));
        assert_body(&hook.recv().await, kind, "ch", "k2");
    }
}

#[tokio::test]
async fn kinds_not_listed_and_earlier_refusals_never_ask() {
    let mut hook = Hook::start(Reply::AllowKey("k")).await;
    let url = hook.url("/auth");
    let server = Server::start(&[
        ("AUTH_HTTP_URL", url.as_str()),
        ("AUTH_HTTP_KINDS", "publish,probe"),
        ("MAX_IP_CONCURRENT_CONNECTIONS", "3"),
    ]);
    let mut publisher = ws(&server.url("/ch/k/publish")).await;
    assert_body(&hook.recv().await, "publish", "ch", "k");
    send(&mut publisher, vec![9]).await;
    // Not listed: served without asking.
    let mut receiver = ws(&server.url("/ch/k/receive")).await;
    assert_eq!(next_binary(&mut receiver).await, vec![9]);
    // Refused before the callback: already publishing, 404s, the per-IP limit.
    assert_eq!(
        refused(&server.url("/ch/k/publish")).await.1,
        "Already publishing."
    );
    assert_eq!(refused(&server.url("/ch/k/nonsense")).await.0, 404);
    assert_eq!(refused(&server.url("/c.h/k/probe")).await.0, 404);
    assert_eq!(refused(&server.url("/ch/k!/probe")).await.0, 404);
    let third = ws(&server.url("/other/k/receive")).await;
    assert_eq!(refused(&server.url("/ch/k/probe")).await.0, 429);
    drop(third);
    // The slot, not the connection gauge: the two are released at different moments.
    server.wait_ip_slots([127, 0, 0, 1].into(), 2).await;
    // The next request the callback sees is this probe: none of the above asked.
    let mut probe = ws(&server.url("/ch/k/probe")).await;
    assert_eq!(next_binary(&mut probe).await, vec![9]);
    assert_body(&hook.recv().await, "probe", "ch", "k");
    assert!(hook.drain().is_empty());
    assert_eq!(hook.count(), 2);

    // The play whitelist refuses before the callback too.
    let mut hook = Hook::start(Reply::Status(200)).await;
    let url = hook.url("/auth");
    let server = Server::start(&[
        ("AUTH_HTTP_URL", url.as_str()),
        ("AUTH_HTTP_KINDS", "receive"),
        ("PLAY_WHITELIST", "10.0.0.0/8"),
    ]);
    assert_eq!(
        refused(&server.url("/ch/k/receive")).await.1,
        "Cannot play: Not whitelisted."
    );
    let p = ws(&server.url("/ch/k/publish")).await;
    drop(p);
    assert!(hook.drain().is_empty());
    assert_eq!(hook.count(), 0);
}

#[tokio::test]
async fn waiting_callbacks_are_bounded() {
    let hook = Hook::start(Reply::Hang).await;
    let url = hook.url("/auth");
    let server = Server::start(&[
        ("AUTH_HTTP_URL", url.as_str()),
        ("AUTH_HTTP_MAX_INFLIGHT", "2"),
        ("METRICS_ADDRESS", "127.0.0.1:0"),
    ]);
    let waiting: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|ch| {
            let url = server.url(&format!("/{ch}/k/publish"));
            tokio::spawn(async move { try_ws(&url).await.map(|_| ()) })
        })
        .collect();
    hook.wait_count(2).await;
    // Denied at once: the two in flight hang until released, so a wait for a
    // slot would time out this request instead of counting it overloaded.
    assert!(is_refused(&refused(&server.url("/c/k/publish")).await));
    assert_eq!(
        server.metric("ws_stream_auth_requests_total{outcome=\"overloaded\"}"),
        1.0
    );
    assert_eq!(hook.count(), 2);
    hook.release();
    for w in waiting {
        tokio::time::timeout(STEP, w)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
    assert_eq!(
        server.metric("ws_stream_auth_requests_total{outcome=\"allowed\"}"),
        2.0
    );
}

#[tokio::test]
async fn the_key_never_reaches_the_log() {
    let mut hook = Hook::start(Reply::AllowKey("sesame-4f1c9a")).await;
    let url = hook.url("/auth");
    let mut server = Server::process(&[
        ("AUTH_HTTP_URL", url.as_str()),
        ("AUTH_HTTP_KINDS", "publish,receive"),
        ("LOG_DEBUG", "YES"),
    ]);
    let mut publisher = ws(&server.url("/ch/sesame-4f1c9a/publish")).await;
    send(&mut publisher, vec![1; 100]).await;
    let mut receiver = ws(&server.url("/ch/sesame-4f1c9a/receive")).await;
    assert_eq!(next_binary(&mut receiver).await, vec![1; 100]);
    assert!(is_refused(
        &refused(&server.url("/ch/wrong-7d2e11/receive")).await
    ));
    assert_eq!(hook.drain().len(), 3);
    close(publisher).await;
    server.stop();
    let log = server.log_text();
    assert!(
        log.contains("denied by the authorisation callback"),
        "{log}"
    );
    for key in ["sesame-4f1c9a", "wrong-7d2e11"] {
        assert!(!log.contains(key), "{key} in the log:\n{log}");
    }
}

#[tokio::test]
async fn with_a_coordinator_the_callback_asks_first() {
    use common::coordinator::Coordinator;
    use ws_stream_server::control::codec::ControlMessage;
    let mut coord = Coordinator::start().await;
    let base = coord.base_url();
    let mut hook = Hook::start(Reply::AllowKey("good")).await;
    let url = hook.url("/auth");
    let server = Server::start(&[
        ("CONTROL_BASE_URL", base.as_str()),
        ("AUTH_HTTP_URL", url.as_str()),
    ]);
    let mut link = coord.link().await;
    server.wait_control(true).await;
    // Denied by the callback: the coordinator is never asked.
    assert!(is_refused(
        &refused(&server.url("/denied/bad/publish")).await
    ));
    assert_body(&hook.recv().await, "publish", "denied", "bad");
    let url = server.url("/ch/good/publish");
    let publish = tokio::spawn(async move { try_ws(&url).await.map(|_| ()) });
    assert_body(&hook.recv().await, "publish", "ch", "good");
    let request = link.recv().await;
    assert_eq!(request.method(), "PUBLISH-REQUEST");
    assert_eq!(request.param("Stream-Channel"), Some("ch"));
    link.send(
        &ControlMessage::new("PUBLISH-DENY")
            .with_param("Request-ID", request.param("Request-ID").unwrap())
            .with_param("Stream-Channel", "ch"),
    )
    .await;
    // The coordinator still decides.
    let answer = tokio::time::timeout(STEP, publish).await.unwrap().unwrap();
    assert!(is_refused(&answer.unwrap_err()));
}

// === The JSON API ===

/// A request to the operator listener: status, head, body as JSON (Null when none).
fn api(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String, serde_json::Value) {
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let (status, head, body) = http(
        server.metrics_addr(),
        &format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"),
    );
    assert!(!body.contains("chan-key-93b1"), "a key in {path}: {body}");
    let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    (status, head, json)
}

fn is_rfc3339(v: &serde_json::Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 24 && s.ends_with('Z') && s.as_bytes()[10] == b'T' && s.starts_with("20")
    })
}

const KEY: &str = "chan-key-93b1";

#[tokio::test]
async fn api_reports_every_field_of_a_live_publisher_and_its_receivers() {
    let server = Server::start(&[
        ("METRICS_ADDRESS", "127.0.0.1:0"),
        ("API_TOKEN", "op-token"),
        ("MAX_IP_CONCURRENT_CONNECTIONS", "16"),
    ]);
    let token = Some("op-token");
    let (status, _, body) = api(&server, "GET", "/api/channels", token);
    assert_eq!((status, body), (200, serde_json::json!({"channels": []})));
    let media = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/chromium-mediarecorder-vp8-opus.webm"
    ))
    .unwrap();
    let mut receivers = Vec::new();
    for kind in ["receive", "receive", "receive-clear-cache"] {
        receivers.push(ws(&server.url(&format!("/live/{KEY}/{kind}"))).await);
    }
    server.wait_waiting(3).await;
    let mut publisher = ws(&server.url(&format!("/live/{KEY}/publish"))).await;
    let chunks: Vec<&[u8]> = media.chunks(16 * 1024).collect();
    for chunk in &chunks {
        send(&mut publisher, chunk.to_vec()).await;
    }
    for r in &mut receivers {
        let mut got = 0;
        while got < media.len() {
            got += next_binary(r).await.len();
        }
        assert_eq!(got, media.len());
    }
    let (status, head, body) = api(&server, "GET", "/api/channels", token);
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let channels = body["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 1, "{body}");
    let ch = &channels[0];
    assert_eq!(ch["channel"], "live");
    let p = &ch["publisher"];
    assert!(p["id"].as_u64().is_some_and(|id| id > 0));
    assert_eq!(p["ip"], "127.0.0.1");
    assert!(is_rfc3339(&p["since"]), "{p}");
    assert!(p["duration_seconds"]
        .as_f64()
        .is_some_and(|d| d > 0.0 && d < 30.0));
    assert_eq!(p["chunks"], chunks.len() as u64);
    assert_eq!(p["bytes_in"], media.len() as u64);
    assert_eq!(
        f64::from(u32::try_from(media.len()).unwrap()),
        server.metric("ws_stream_bytes_in_total")
    );
    assert!(p["bitrate_bps"].as_u64().is_some_and(|b| b > 0));
    assert_eq!(p["container"], "webm");
    // The EBML header and the segment's head: everything before the first Cluster.
    assert_eq!(p["init_segment_bytes"], 189);
    let cache = p["cache_bytes"].as_u64().unwrap();
    assert!(
        cache > 0 && cache <= media.len() as u64 + 16 * chunks.len() as u64,
        "{p}"
    );
    assert_eq!(
        f64::from(u32::try_from(cache).unwrap()),
        server.metric("ws_stream_cache_bytes")
    );
    assert_eq!(
        ch["receiver_counts"],
        serde_json::json!({"receive": 2, "receive-clear-cache": 1, "probe": 0, "play": 0})
    );
    let list = ch["receivers"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    let mut ids: Vec<u64> = list.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    for r in list {
        assert_eq!(r["ip"], "127.0.0.1");
        assert!(is_rfc3339(&r["since"]), "{r}");
        assert_eq!(r["bytes_out"], media.len() as u64, "{r}");
        assert_eq!(r["behind_bytes"], 0, "{r}");
        assert_ne!(r["id"], p["id"]);
    }
    let kinds: Vec<&str> = list.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["receive", "receive", "receive-clear-cache"]);

    // One channel: the same object.
    let (status, _, one) = api(&server, "GET", "/api/channels/live", token);
    assert_eq!(status, 200);
    assert_eq!(one["publisher"]["bytes_in"], p["bytes_in"]);
    assert_eq!(one["receivers"].as_array().unwrap().len(), 3);
    let (status, _, missing) = api(&server, "GET", "/api/channels/nobody", token);
    assert_eq!(status, 404);
    assert!(missing["error"].is_string(), "{missing}");

    // A receiver that leaves is no longer listed.
    close(receivers.remove(0)).await;
    server.wait_playing(2).await;
    let (_, _, one) = api(&server, "GET", "/api/channels/live", token);
    assert_eq!(one["receivers"].as_array().unwrap().len(), 2, "{one}");

    // Kick: the publisher is closed as a STREAM-KILL, receivers get 1000.
    let (status, _, _) = api(&server, "POST", "/api/channels/live/kick", token);
    assert_eq!(status, 204);
    assert_eq!(expect_close(&mut publisher).await, Some(1000));
    for r in &mut receivers {
        assert_eq!(expect_close(r).await, Some(1000));
    }
    server.wait_connections("publish", 0).await;
    assert_eq!(api(&server, "GET", "/api/channels/live", token).0, 404);
    assert_eq!(
        api(&server, "POST", "/api/channels/live/kick", token).0,
        404
    );
    assert_eq!(
        api(&server, "GET", "/api/channels", token).2,
        serde_json::json!({"channels": []})
    );
}

#[tokio::test]
async fn api_token_is_required_and_post_refused_without_one() {
    let server = Server::start(&[("METRICS_ADDRESS", "127.0.0.1:0"), ("API_TOKEN", "s3cret")]);
    let publisher = ws(&server.url(&format!("/ch/{KEY}/publish"))).await;
    for token in [
        None,
        Some("wrong"),
        Some("s3cre"),
        Some("s3cret2"),
        Some(""),
    ] {
        for (method, path) in [
            ("GET", "/api/channels"),
            ("GET", "/api/channels/ch"),
            ("POST", "/api/channels/ch/kick"),
        ] {
            let (status, head, body) = api(&server, method, path, token);
            assert_eq!(status, 401, "{method} {path} with {token:?}");
            assert!(
                head.contains("WWW-Authenticate: Bearer")
                    || head
                        .to_ascii_lowercase()
                        .contains("www-authenticate: bearer"),
                "{head}"
            );
            assert!(body["error"].is_string());
        }
    }
    assert_eq!(
        api(&server, "GET", "/api/channels/ch", Some("s3cret")).0,
        200
    );
    assert_eq!(
        api(&server, "GET", "/api/channels/ch/kick", Some("s3cret")).0,
        405
    );
    assert_eq!(
        api(&server, "DELETE", "/api/channels", Some("s3cret")).0,
        405
    );
    assert_eq!(api(&server, "GET", "/api/else", Some("s3cret")).0, 404);
    // /metrics and /healthz stay open.
    assert_eq!(get(server.metrics_addr(), "/healthz").0, 200);
    drop(publisher);

    let server = Server::start(&[("METRICS_ADDRESS", "127.0.0.1:0")]);
    let mut publisher = ws(&server.url(&format!("/ch/{KEY}/publish"))).await;
    send(&mut publisher, vec![1, 2]).await;
    server
        .wait_metric("ws_stream_chunks_in_total", |v| v == 1.0)
        .await;
    let (status, _, body) = api(&server, "GET", "/api/channels", None);
    assert_eq!(status, 200);
    assert_eq!(body["channels"][0]["publisher"]["container"], "opaque");
    let (status, _, body) = api(&server, "POST", "/api/channels/ch/kick", None);
    assert_eq!(status, 403);
    assert!(body["error"].is_string());
    // Still publishing.
    send(&mut publisher, vec![3]).await;
    server
        .wait_metric("ws_stream_chunks_in_total", |v| v == 2.0)
        .await;
    assert_eq!(
        server.metric("ws_stream_connections{kind=\"publish\"}"),
        1.0
    );
}

#[tokio::test]
async fn api_bitrate_is_within_ten_percent_of_the_real_rate() {
    let server = Server::start(&[("METRICS_ADDRESS", "127.0.0.1:0")]);
    let mut publisher = ws(&server.url(&format!("/rate/{KEY}/publish"))).await;
    // 25 KB every 50 ms: 4 Mbit/s, for 3 s.
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut sent = 0u64;
    for i in 0..60 {
        tick.tick().await;
        send(&mut publisher, payload(i, 25_000)).await;
        sent += 25_000;
    }
    server
        .wait_metric("ws_stream_chunks_in_total", |v| v == 60.0)
        .await;
    let real = sent as f64 * 8.0 / started.elapsed().as_secs_f64();
    let (_, _, body) = api(&server, "GET", "/api/channels/rate", None);
    let reported = body["publisher"]["bitrate_bps"].as_f64().unwrap();
    let error = (reported - real).abs() / real;
    assert!(error < 0.10, "reported {reported} real {real}");
}

// === Event webhooks ===

/// The next event of `name` (others of the same test are skipped).
async fn event(hook: &mut Hook, name: &str) -> serde_json::Value {
    loop {
        let r = hook.recv().await;
        assert!(!r.raw.contains(KEY), "a key in an event: {}", r.raw);
        assert_eq!(r.method, "POST");
        assert_eq!(r.header("content-type"), Some("application/json"));
        if r.body["event"] == name {
            return r.body;
        }
    }
}

fn fields(v: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    names.sort_unstable();
    names
}

#[tokio::test]
async fn webhook_reports_every_event_with_its_fields() {
    let mut hook = Hook::start(Reply::Status(204)).await;
    let url = hook.url("/events");
    let mut server = Server::start(&[
        ("EVENT_WEBHOOK_URL", url.as_str()),
        ("METRICS_ADDRESS", "127.0.0.1:0"),
        ("API_TOKEN", "t"),
        ("MAX_MESSAGE_SIZE_MB", "1"),
        ("RECEIVER_QUEUE_MB", "1"),
        ("GOP_CACHE_SIZE_MB", "0"),
        ("MAX_IP_CONCURRENT_CONNECTIONS", "16"),
    ]);
    // Client closed, with a receiver that stops reading and is kicked.
    let mut publisher = ws(&server.url(&format!("/one/{KEY}/publish"))).await;
    let start = event(&mut hook, "publish_start").await;
    assert_eq!(fields(&start), ["channel", "event", "id", "ip", "time"]);
    assert_eq!(start["channel"], "one");
    assert_eq!(start["ip"], "127.0.0.1");
    assert!(is_rfc3339(&start["time"]), "{start}");
    let stuck = ws(&server.url(&format!("/one/{KEY}/receive"))).await;
    server.wait_playing(1).await;
    let mut sent = 0u64;
    for seq in 0..64 {
        send(&mut publisher, payload(seq, 256 * 1024)).await;
        sent += 256 * 1024;
    }
    let kicked = event(&mut hook, "receiver_kicked").await;
    assert_eq!(
        fields(&kicked),
        [
            "behind_bytes",
            "channel",
            "event",
            "id",
            "ip",
            "kind",
            "time"
        ]
    );
    assert_eq!(
        (&kicked["channel"], &kicked["kind"]),
        (&"one".into(), &"receive".into())
    );
    assert!(
        kicked["behind_bytes"].as_u64().is_some_and(|b| b > 1 << 20),
        "{kicked}"
    );
    assert_ne!(kicked["id"], start["id"]);
    drop(stuck);
    close(publisher).await;
    let end = event(&mut hook, "publish_end").await;
    assert_eq!(
        fields(&end),
        [
            "bytes",
            "channel",
            "chunks",
            "duration_seconds",
            "event",
            "id",
            "ip",
            "reason",
            "time"
        ]
    );
    assert_eq!(
        (&end["id"], &end["channel"]),
        (&start["id"], &start["channel"])
    );
    assert_eq!(
        (end["chunks"].as_u64(), end["bytes"].as_u64()),
        (Some(64), Some(sent))
    );
    assert!(end["duration_seconds"]
        .as_f64()
        .is_some_and(|d| d > 0.0 && d < 30.0));
    assert_eq!(end["reason"], "client_closed");

    // Killed by the operator.
    let mut publisher = ws(&server.url(&format!("/two/{KEY}/publish"))).await;
    event(&mut hook, "publish_start").await;
    assert_eq!(
        api(&server, "POST", "/api/channels/two/kick", Some("t")).0,
        204
    );
    assert_eq!(expect_close(&mut publisher).await, Some(1000));
    assert_eq!(event(&mut hook, "publish_end").await["reason"], "killed");

    // An error: a message over the bound.
    let mut publisher = ws(&server.url(&format!("/three/{KEY}/publish"))).await;
    event(&mut hook, "publish_start").await;
    let _ = tokio::time::timeout(
        STEP,
        futures_util::SinkExt::send(
            &mut publisher,
            tokio_tungstenite::tungstenite::Message::Binary(vec![0; 2 << 20].into()),
        ),
    )
    .await;
    assert_eq!(event(&mut hook, "publish_end").await["reason"], "error");

    // Shutdown: the drain still delivers the last events.
    let _publisher = ws(&server.url(&format!("/four/{KEY}/publish"))).await;
    event(&mut hook, "publish_start").await;
    server.shutdown().await;
    let end = hook
        .drain()
        .into_iter()
        .find(|r| r.body["event"] == "publish_end")
        .expect("publish_end delivered during the drain");
    assert_eq!(end.body["reason"], "shutdown");
    assert_eq!(end.body["channel"], "four");
}

#[tokio::test]
async fn webhook_reports_the_coordinators_kill() {
    use common::coordinator::Coordinator;
    use ws_stream_server::control::codec::ControlMessage;
    let mut coord = Coordinator::start().await;
    let base = coord.base_url();
    let mut hook = Hook::start(Reply::Status(200)).await;
    let url = hook.url("/events");
    let server = Server::start(&[
        ("CONTROL_BASE_URL", base.as_str()),
        ("EVENT_WEBHOOK_URL", url.as_str()),
    ]);
    let mut link = coord.link().await;
    server.wait_control(true).await;
    let url = server.url(&format!("/ch/{KEY}/publish"));
    let publish = tokio::spawn(async move { try_ws(&url).await });
    let request = link.recv().await;
    link.send(
        &ControlMessage::new("PUBLISH-ACCEPT")
            .with_param("Request-ID", request.param("Request-ID").unwrap())
            .with_param("Stream-Channel", "ch")
            .with_param("Stream-ID", "sid-1"),
    )
    .await;
    let mut publisher = publish.await.unwrap().unwrap();
    event(&mut hook, "publish_start").await;
    link.send(
        &ControlMessage::new("STREAM-KILL")
            .with_param("Stream-Channel", "ch")
            .with_param("Stream-ID", "sid-1"),
    )
    .await;
    assert_eq!(expect_close(&mut publisher).await, Some(1000));
    assert_eq!(
        event(&mut hook, "publish_end").await["reason"],
        "coordinator"
    );
}

/// The webhook is never on a stream's path: with an endpoint that answers no
/// request at all, a publisher is admitted, its chunks reach the receiver, it
/// ends, and the next one starts, while every event it caused still hangs.
/// (Had any of these waited for the webhook, the test would time out.)
/// Publishes `n` chunks one at a time and returns each one's publish-to-receive time.
async fn round_trips(publisher: &mut Ws, receiver: &mut Ws, n: usize) -> Vec<Duration> {
    let mut times = Vec::with_capacity(n);
    for seq in 0..n as u64 {
        let chunk = payload(seq, 4096);
        let sent = Instant::now();
        send(publisher, chunk.clone()).await;
        assert_eq!(next_binary(receiver).await, chunk, "chunk {seq}");
        times.push(sent.elapsed());
    }
    times.sort_unstable();
    times
}

/// Median and p99 of sorted durations, in microseconds.
fn median_p99(sorted: &[Duration]) -> (u128, u128) {
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize].as_micros();
    (at(0.5), at(0.99))
}

#[tokio::test]
async fn a_hanging_webhook_delays_neither_publishing_nor_delivery() {
    const CHUNKS: usize = 400;
    // The same round trips without any webhook, for comparison (printed, not asserted).
    let plain = Server::start(&[]);
    let mut publisher = ws(&plain.url(&format!("/hang/{KEY}/publish"))).await;
    let mut receiver = ws(&plain.url(&format!("/hang/{KEY}/receive"))).await;
    plain.wait_playing(1).await;
    let without = round_trips(&mut publisher, &mut receiver, CHUNKS).await;
    close(publisher).await;
    assert_eq!(expect_close(&mut receiver).await, Some(1000));

    let hook = Hook::start(Reply::Hang).await;
    let url = hook.url("/events");
    let server = Server::start(&[
        ("EVENT_WEBHOOK_URL", url.as_str()),
        ("METRICS_ADDRESS", "127.0.0.1:0"),
    ]);
    let mut publisher = ws(&server.url(&format!("/hang/{KEY}/publish"))).await;
    // publish_start is being sent and gets no answer.
    hook.wait_count(1).await;
    let mut receiver = ws(&server.url(&format!("/hang/{KEY}/receive"))).await;
    server.wait_playing(1).await;
    let with = round_trips(&mut publisher, &mut receiver, CHUNKS).await;
    let (m0, p0) = median_p99(&without);
    let (m1, p1) = median_p99(&with);
    println!(
        "chunk latency over {CHUNKS} round trips of 4 KiB: without webhook median {m0} us p99 {p0} us; \
         with a hanging webhook median {m1} us p99 {p1} us"
    );
    close(publisher).await;
    assert_eq!(expect_close(&mut receiver).await, Some(1000));
    server
        .wait_metric("ws_stream_channels_active", |n| n == 0.0)
        .await;
    let again = ws(&server.url(&format!("/hang/{KEY}/publish"))).await;
    drop(again);
    // Nothing was answered: no event counted as sent or failed yet.
    assert_eq!(
        server.metric("ws_stream_webhook_events_total{outcome=\"sent\"}"),
        0.0
    );
    assert_eq!(
        server.metric("ws_stream_webhook_events_total{outcome=\"failed\"}"),
        0.0
    );
}

#[tokio::test]
async fn the_event_queue_is_bounded_and_drops_the_oldest() {
    let hook = Hook::start(Reply::Hang).await;
    let url = hook.url("/events");
    let server = Server::start(&[
        ("EVENT_WEBHOOK_URL", url.as_str()),
        ("METRICS_ADDRESS", "127.0.0.1:0"),
    ]);
    // 560 publishers: 1,120 events while the webhook answers none.
    for i in 0..560 {
        let p = ws(&server.url(&format!("/q{i}/{KEY}/publish"))).await;
        close(p).await;
    }
    server
        .wait_metric("ws_stream_connections{kind=\"publish\"}", |v| v == 0.0)
        .await;
    // Each of the 4 senders holds one event, and holds it through all its
    // attempts (over 15 s), so none has failed yet: every other event beyond
    // the queue's 1,024 was dropped at once.
    hook.wait_count(4).await;
    assert_eq!(
        server.metric("ws_stream_webhook_events_total{outcome=\"failed\"}"),
        0.0
    );
    let expected = (1120 - 1024 - 4) as f64;
    server
        .wait_metric("ws_stream_webhook_events_total{outcome=\"dropped\"}", |v| {
            v == expected
        })
        .await;
    assert_eq!(
        server.metric("ws_stream_webhook_events_total{outcome=\"sent\"}"),
        0.0
    );
}
