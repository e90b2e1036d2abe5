//! Coordinator mode (docs/PROTOCOL.md §3) against a scripted coordinator:
//! through the library's `run()`, and through the real binary where the log
//! is checked for secrets.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::coordinator::{Coordinator, Link};
use common::*;
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use tokio_tungstenite::tungstenite::Message;
use ws_stream_server::control::codec::ControlMessage;

const SECRET: &str = "coordinator-secret-7781";

fn vars_for<'a>(base: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut vars = vec![
        ("CONTROL_BASE_URL", base),
        ("CONTROL_SECRET", SECRET),
        ("LOG_DEBUG", "YES"),
    ];
    vars.extend_from_slice(extra);
    vars
}

fn server_for(coord: &Coordinator, extra: &[(&str, &str)]) -> Server {
    Server::start(&vars_for(&coord.base_url(), extra))
}

/// The real binary, for tests that read its log.
fn process_for(coord: &Coordinator, extra: &[(&str, &str)]) -> Server {
    Server::process(&vars_for(&coord.base_url(), extra))
}

fn reply(method: &str, request: &ControlMessage, stream_id: &str) -> ControlMessage {
    ControlMessage::new(method)
        .with_param("Request-ID", request.param("Request-ID").unwrap())
        .with_param("Stream-Channel", request.param("Stream-Channel").unwrap())
        .with_param("Stream-ID", stream_id)
}

/// Starts a publish in the background; the coordinator must answer it.
fn publish_async(
    server: &Server,
    path: &str,
) -> tokio::task::JoinHandle<Result<Ws, (u16, String)>> {
    let url = server.url(path);
    tokio::spawn(async move { try_ws(&url).await })
}

/// The server's side of the link is up, for the `times`-th time.
async fn linked(server: &Server, times: usize) {
    let sample = "ws_stream_control_dials_total{outcome=\"connected\"}";
    server.wait_metric(sample, |n| n >= times as f64).await;
    server.wait_control(true).await;
}

async fn accepted(server: &Server, link: &mut Link, channel: &str, stream_id: &str) -> Ws {
    let publish = publish_async(server, &format!("/{channel}/key1/publish"));
    let request = link.recv().await;
    assert_eq!(request.method(), "PUBLISH-REQUEST");
    link.send(&reply("PUBLISH-ACCEPT", &request, stream_id))
        .await;
    publish.await.unwrap().expect("accepted publisher upgraded")
}

#[tokio::test]
async fn dials_with_the_documented_path_and_headers() {
    let mut coord = Coordinator::start().await;
    let server = process_for(
        &coord,
        &[
            ("EXTERNAL_IP", "10.9.8.7"),
            ("EXTERNAL_PORT", "8443"),
            ("EXTERNAL_SSL", "YES"),
        ],
    );
    let link = coord.link().await;
    assert_eq!(link.path, "/ws/control/wss");
    assert_eq!(link.header("x-external-ip"), Some("10.9.8.7"));
    assert_eq!(link.header("x-custom-port"), Some("8443"));
    assert_eq!(link.header("x-ssl-use"), Some("true"));
    let token = link.header("x-control-auth-token").expect("token header");
    let mut validation = Validation::new(Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let claims = decode::<serde_json::Value>(
        token,
        &DecodingKey::from_secret(SECRET.as_bytes()),
        &validation,
    )
    .expect("token signed with CONTROL_SECRET");
    assert_eq!(claims.claims, serde_json::json!({"sub": "wss-control"}));
    assert!(!server.log_text().contains(SECRET));
    assert!(!server.log_text().contains(token));
}

#[tokio::test]
async fn no_token_without_a_secret() {
    let mut coord = Coordinator::start().await;
    let base = coord.base_url();
    let _server = Server::start(&[("CONTROL_BASE_URL", base.as_str())]);
    let link = coord.link().await;
    assert_eq!(link.header("x-control-auth-token"), None);
    assert_eq!(link.header("x-ssl-use"), None);
}

#[tokio::test]
async fn accept_relays_and_the_end_sends_publish_end() {
    let mut coord = Coordinator::start().await;
    let server = process_for(&coord, &[]);
    let mut link = coord.link().await;
    linked(&server, 1).await;
    let publish = publish_async(&server, "/chan/key1/publish");
    let request = link.recv().await;
    assert_eq!(request.method(), "PUBLISH-REQUEST");
    assert_eq!(request.param("Stream-Channel"), Some("chan"));
    assert_eq!(request.param("Stream-Key"), Some("key1"));
    assert_eq!(request.param("User-IP"), Some("127.0.0.1"));
    assert!(request.param("Request-ID").unwrap().parse::<u64>().is_ok());
    link.send(&reply("PUBLISH-ACCEPT", &request, "stream-42"))
        .await;
    let mut publisher = publish.await.unwrap().expect("upgraded");
    let mut receiver = ws(&server.url("/chan/key1/receive")).await;
    send(&mut publisher, vec![1, 2, 3]).await;
    assert_eq!(next_binary(&mut receiver).await, [1, 2, 3]);
    close(publisher).await;
    assert_eq!(expect_close(&mut receiver).await, Some(1000));
    let end = link.recv().await;
    assert_eq!(end.method(), "PUBLISH-END");
    assert_eq!(end.param("Stream-Channel"), Some("chan"));
    assert_eq!(end.param("Stream-ID"), Some("stream-42"));
    assert!(!server.log_text().contains("key1"), "key in log");
}

#[tokio::test]
async fn deny_timeout_and_down_answer_invalid_key() {
    let mut coord = Coordinator::start().await;
    let server = server_for(&coord, &[("PUBLISH_AUTH_TIMEOUT_SECONDS", "1")]);
    let mut link = coord.link().await;
    linked(&server, 1).await;
    // Denied.
    let publish = publish_async(&server, "/c1/k/publish");
    let request = link.recv().await;
    link.send(&reply("PUBLISH-DENY", &request, "")).await;
    assert_eq!(
        publish.await.unwrap().err(),
        Some((403, "Invalid Key.".to_owned()))
    );
    // No answer: denied after the timeout, and the channel is free again.
    let started = Instant::now();
    let publish = publish_async(&server, "/c1/k/publish");
    let request = link.recv().await;
    assert_eq!(
        publish.await.unwrap().err(),
        Some((403, "Invalid Key.".to_owned()))
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    // Its late accept is answered with PUBLISH-END so the coordinator drops the stream.
    link.send(&reply("PUBLISH-ACCEPT", &request, "late-stream"))
        .await;
    let end = link.recv().await;
    assert_eq!(
        (end.method(), end.param("Stream-ID")),
        ("PUBLISH-END", Some("late-stream"))
    );
    // Link down: denied at once.
    drop(link);
    drop(coord);
    server.wait_control(false).await;
    let started = Instant::now();
    assert_eq!(
        try_ws(&server.url("/c1/k/publish")).await.err(),
        Some((403, "Invalid Key.".to_owned()))
    );
    assert!(started.elapsed() < Duration::from_millis(900));
}

#[tokio::test]
async fn coordinator_unreachable_at_start() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", unused.local_addr().unwrap());
    drop(unused);
    let server = Server::start(&[("CONTROL_BASE_URL", url.as_str())]);
    server
        .wait_metric("ws_stream_control_dials_total{outcome=\"failed\"}", |n| {
            n >= 1.0
        })
        .await;
    assert_eq!(
        try_ws(&server.url("/c/k/publish")).await.err(),
        Some((403, "Invalid Key.".to_owned()))
    );
    // Receivers are not affected by the coordinator.
    let _r = ws(&server.url("/c/k/receive")).await;
}

#[tokio::test]
async fn unknown_ids_and_bad_input_are_ignored() {
    let mut coord = Coordinator::start().await;
    let server = process_for(&coord, &[]);
    let mut link = coord.link().await;
    linked(&server, 1).await;
    let bogus = ControlMessage::new("PUBLISH-ACCEPT")
        .with_param("Request-ID", "987654")
        .with_param("Stream-Channel", "x")
        .with_param("Stream-ID", "s");
    link.send(&bogus).await;
    link.send_raw(Message::Text("garbage\n\n\u{0}\u{7f}ÿ".into()))
        .await;
    link.send_raw(Message::Text("".into())).await;
    link.send_raw(Message::Binary(vec![0xff; 100].into())).await;
    link.send_raw(Message::Text("SOMETHING-NEW\nA: b\n\nbody".into()))
        .await;
    link.send_raw(Message::Text("PUBLISH-DENY\n".into())).await;
    link.send_raw(Message::Text("STREAM-KILL\n".into())).await;
    link.send_raw(Message::Text("PUBLISH-ACCEPT\nRequest-ID: nope\n".into()))
        .await;
    link.send_raw(Message::Text(
        "ERROR\nError-Code: 7\nError-Message: boom".into(),
    ))
    .await;
    // The link is still up and works.
    let mut publisher = accepted(&server, &mut link, "ok", "s-ok").await;
    send(&mut publisher, vec![5]).await;
    // The coordinator's ERROR message is logged.
    server.wait_for_log("boom").await;
    link.quiet_for(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn kill_by_id_and_by_star() {
    let mut coord = Coordinator::start().await;
    let server = server_for(&coord, &[]);
    let mut link = coord.link().await;
    linked(&server, 1).await;
    let mut a = accepted(&server, &mut link, "ka", "id-a").await;
    let mut b = accepted(&server, &mut link, "kb", "id-b").await;
    let kill = |channel: &str, id: &str| {
        ControlMessage::new("STREAM-KILL")
            .with_param("Stream-Channel", channel)
            .with_param("Stream-ID", id)
    };
    link.send(&kill("ka", "wrong-id")).await;
    link.quiet_for(Duration::from_millis(300)).await;
    link.send(&kill("ka", "id-a")).await;
    assert_eq!(expect_close(&mut a).await, Some(1000));
    let end = link.recv().await;
    assert_eq!(
        (end.method(), end.param("Stream-ID")),
        ("PUBLISH-END", Some("id-a"))
    );
    link.send(&kill("kb", "*")).await;
    assert_eq!(expect_close(&mut b).await, Some(1000));
    let end = link.recv().await;
    assert_eq!(
        (end.method(), end.param("Stream-ID")),
        ("PUBLISH-END", Some("id-b"))
    );
}

#[tokio::test]
async fn reconnects_at_once_after_a_drop_and_closes_publishers() {
    let mut coord = Coordinator::start().await;
    let server = server_for(&coord, &[]);
    let mut link = coord.link().await;
    linked(&server, 1).await;
    let mut publisher = accepted(&server, &mut link, "rc", "id-rc").await;
    drop(link);
    let mut again = coord.link().await;
    linked(&server, 2).await;
    assert_eq!(expect_close(&mut publisher).await, Some(1000));
    let end = again.recv().await;
    assert_eq!(
        (end.method(), end.param("Stream-ID")),
        ("PUBLISH-END", Some("id-rc"))
    );
}

/// On the paused clock: a failed dial is retried after the default 10 s
/// `CONTROL_RETRY_SECONDS`, and reaches a coordinator that came back.
#[tokio::test(start_paused = true)]
async fn reconnects_to_a_restarted_coordinator_after_the_retry_delay() {
    let mut coord = Coordinator::start().await;
    let addr = coord.addr.to_string();
    let server = Server::start_here(&vars_for(&coord.base_url(), &[])).await;
    let link = coord.link().await;
    linked(&server, 1).await;
    drop(link);
    drop(coord);
    // The link is dialled again at once, and that dial fails.
    let failed = "ws_stream_control_dials_total{outcome=\"failed\"}";
    server.wait_metric(failed, |n| n >= 1.0).await;
    let down_at = tokio::time::Instant::now();
    let mut restarted = Coordinator::start_on(&addr).await;
    let mut link = restarted.link_within(Duration::from_secs(30)).await;
    let waited = down_at.elapsed();
    assert!(
        waited >= Duration::from_millis(9_900) && waited < Duration::from_secs(11),
        "dialled again after {waited:?}"
    );
    linked(&server, 2).await;
    let _p = accepted(&server, &mut link, "back", "id-back").await;
}

#[tokio::test]
async fn heartbeats_both_ways_and_silence_redials() {
    let mut coord = Coordinator::start().await;
    let server = server_for(
        &coord,
        &[("HEARTBEAT_SECONDS", "1"), ("IDLE_TIMEOUT_SECONDS", "3")],
    );
    let mut link = coord.link().await;
    linked(&server, 1).await;
    let started = Instant::now();
    assert_eq!(link.recv_any().await.method(), "HEARTBEAT");
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "nothing sent right after connecting"
    );
    // Our heartbeats keep the link up past the silence limit.
    for _ in 0..4 {
        link.send(&ControlMessage::new("HEARTBEAT")).await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    coord.no_link_within(Duration::from_millis(100)).await;
    // Silence: the server gives up on this link and dials again.
    link.closed().await;
    let _again = coord.link().await;
}

/// Two racing requests are both asked; the first accepted wins, the other is
/// answered `Already publishing.` and its stream ended at the coordinator.
#[tokio::test]
async fn racing_publishers_with_a_slow_coordinator() {
    let mut coord = Coordinator::start().await;
    let server = server_for(&coord, &[]);
    let mut link = coord.link().await;
    linked(&server, 1).await;
    let first = publish_async(&server, "/race/k/publish");
    let first_request = link.recv().await;
    let second = publish_async(&server, "/race/k/publish");
    let second_request = link.recv().await;
    assert_eq!(second_request.method(), "PUBLISH-REQUEST");
    link.send(&reply("PUBLISH-ACCEPT", &second_request, "id-second"))
        .await;
    let _p = second
        .await
        .unwrap()
        .expect("the first accepted request publishes");
    link.send(&reply("PUBLISH-ACCEPT", &first_request, "id-first"))
        .await;
    assert_eq!(
        first.await.unwrap().err(),
        Some((403, "Already publishing.".to_owned()))
    );
    let end = link.recv().await;
    assert_eq!(
        (end.method(), end.param("Stream-ID")),
        ("PUBLISH-END", Some("id-first"))
    );
    // While it publishes, a new request is refused without asking.
    assert_eq!(
        try_ws(&server.url("/race/k/publish")).await.err(),
        Some((403, "Already publishing.".to_owned()))
    );
    link.quiet_for(Duration::from_millis(300)).await;
}

/// A squatter whose request the coordinator never answers does not keep the
/// real publisher out: both are asked, the real one gets in at once.
#[tokio::test]
async fn a_request_nobody_answers_does_not_lock_the_channel() {
    let mut coord = Coordinator::start().await;
    let server = server_for(&coord, &[]);
    let mut link = coord.link().await;
    linked(&server, 1).await;
    let squatter = publish_async(&server, "/squat/any-key/publish");
    let squat_request = link.recv().await;
    assert_eq!(squat_request.param("Stream-Key"), Some("any-key"));
    let started = Instant::now();
    let mut publisher = accepted(&server, &mut link, "squat", "id-real").await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let mut receiver = ws(&server.url("/squat/key1/receive")).await;
    send(&mut publisher, vec![1, 2, 3]).await;
    assert_eq!(next_binary(&mut receiver).await, [1, 2, 3]);
    // The squatter's late accept loses: 403, and its stream is ended at once.
    link.send(&reply("PUBLISH-ACCEPT", &squat_request, "id-squat"))
        .await;
    assert_eq!(
        squatter.await.unwrap().err(),
        Some((403, "Already publishing.".to_owned()))
    );
    let end = link.recv().await;
    assert_eq!(
        (end.method(), end.param("Stream-ID")),
        ("PUBLISH-END", Some("id-squat"))
    );
}

/// Three connections loop publish requests that the coordinator denies after
/// 0.5 s; the real publisher gets in every time it tries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looping_denied_squatters_never_keep_the_real_publisher_out() {
    const ROUNDS: usize = 10;
    let mut coord = Coordinator::start().await;
    let server = server_for(&coord, &[("CONCURRENT_LIMIT_WHITELIST", "127.0.0.1")]);
    let link = coord.link().await;
    linked(&server, 1).await;
    // The coordinator: squatters' keys denied after 0.5 s, the real key accepted at once.
    let coordinator = tokio::spawn(scripted_coordinator(link));
    let stop = tokio_util::sync::CancellationToken::new();
    let denied = Arc::new(AtomicU32::new(0));
    let squatters: Vec<_> = (0..3)
        .map(|i| {
            let (url, stop) = (server.url(&format!("/loop/squat{i}/publish")), stop.clone());
            let denied = denied.clone();
            tokio::spawn(async move {
                let (mut tries, deadline) = (0u32, Instant::now() + Duration::from_secs(60));
                while !stop.is_cancelled() && tries < 20_000 && Instant::now() < deadline {
                    tries += 1;
                    match try_ws(&url).await {
                        Ok(_) => panic!("a squatter got in"),
                        Err((403, body)) if body == "Invalid Key." => {
                            denied.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {}
                    }
                }
            })
        })
        .collect();
    let mut got_in = 0;
    for round in 0..ROUNDS {
        // Each attempt meets a fresh cycle of squatters: denied once more, and pending again.
        let before = denied.load(Ordering::Relaxed);
        let deadline = Instant::now() + STEP;
        while denied.load(Ordering::Relaxed) < before + 3 {
            assert!(
                Instant::now() < deadline,
                "the squatters stopped being denied"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server
            .wait_metric("ws_stream_control_pending_requests", |n| n >= 3.0)
            .await;
        match try_ws(&server.url("/loop/real/publish")).await {
            Ok(publisher) => {
                got_in += 1;
                close(publisher).await;
                server.wait_connections("publish", 0).await;
            }
            Err(refused) => panic!("round {round}: the real publisher was refused: {refused:?}"),
        }
    }
    stop.cancel();
    coordinator.abort();
    for s in squatters {
        tokio::time::timeout(STEP, s).await.unwrap().unwrap();
    }
    assert_eq!(got_in, ROUNDS);
}

/// Answers every PUBLISH-REQUEST: key `real` accepted at once, any other key
/// denied after 0.5 s.
async fn scripted_coordinator(mut link: Link) {
    let (deny_tx, mut deny_rx) = tokio::sync::mpsc::unbounded_channel::<ControlMessage>();
    let mut n = 0u64;
    loop {
        tokio::select! {
            msg = link.recv() => {
                if msg.method() != "PUBLISH-REQUEST" {
                    continue;
                }
                n += 1;
                if msg.param("Stream-Key") == Some("real") {
                    link.send(&reply("PUBLISH-ACCEPT", &msg, &format!("id-{n}"))).await;
                } else {
                    let deny = reply("PUBLISH-DENY", &msg, "");
                    let tx = deny_tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        let _ = tx.send(deny);
                    });
                }
            }
            Some(deny) = deny_rx.recv() => link.send(&deny).await,
        }
    }
}

#[tokio::test]
async fn a_publisher_that_leaves_while_waiting_frees_the_stream() {
    let mut coord = Coordinator::start().await;
    let server = server_for(&coord, &[]);
    let mut link = coord.link().await;
    linked(&server, 1).await;
    let publish = publish_async(&server, "/gone/k/publish");
    let request = link.recv().await;
    publish.abort();
    let _ = publish.await;
    // The server saw the publisher leave: its request no longer waits.
    server
        .wait_metric("ws_stream_control_pending_requests", |n| n == 0.0)
        .await;
    link.send(&reply("PUBLISH-ACCEPT", &request, "id-gone"))
        .await;
    let end = link.recv().await;
    assert_eq!(
        (end.method(), end.param("Stream-ID")),
        ("PUBLISH-END", Some("id-gone"))
    );
    // And the channel is free.
    let _p = accepted(&server, &mut link, "gone", "id-2").await;
}

#[tokio::test]
async fn a_huge_control_message_drops_the_link_which_is_dialled_again() {
    let mut coord = Coordinator::start().await;
    let server = server_for(&coord, &[]);
    let mut link = coord.link().await;
    linked(&server, 1).await;
    let huge = format!("ERROR\nError-Message: {}", "x".repeat(200 * 1024));
    link.send_raw(Message::Text(huge.into())).await;
    link.closed().await;
    let mut again = coord.link().await;
    linked(&server, 2).await;
    let _p = accepted(&server, &mut again, "after-huge", "id-h").await;
    assert_eq!(get(server.addr, "/").0, 200);
}

/// The dial resolves a host name (getaddrinfo: in the static glibc build this
/// is the lookup that needs /etc/hosts and DNS without NSS modules).
#[tokio::test]
async fn dials_a_coordinator_named_by_host_name() {
    let mut coord = Coordinator::start().await;
    let base = format!("ws://localhost:{}/", coord.addr.port());
    let server = Server::start(&[("CONTROL_BASE_URL", base.as_str())]);
    let link = coord.link().await;
    assert_eq!(link.path, "/ws/control/wss");
    linked(&server, 1).await;
}
