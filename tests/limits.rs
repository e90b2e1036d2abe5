//! Resource limits (issue 14): the open-files limit, the operator listener's
//! cap and timeouts, the listen backlog. Through the real binary where the
//! process's own limits matter, through `run()` elsewhere.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Raises this test process's soft open-files limit to its hard limit (the
/// clients' sockets, and the server's when it runs in this process).
fn raise_own_limit(need: u64) {
    let soft = rlimit::increase_nofile_limit(u64::MAX).expect("raise the open-files limit");
    assert!(
        soft >= need,
        "this test needs {need} open files; the hard limit allows {soft}"
    );
}

/// Opens `n` WebSockets to `path`, at most 100 handshakes at a time, each within [`STEP`].
async fn open_many(server: &Server, path: &str, n: usize) -> Vec<Ws> {
    let mut open = Vec::with_capacity(n);
    let mut batch = JoinSet::new();
    for i in 0..n {
        let url = server.url(path);
        batch.spawn(async move { try_ws(&url).await });
        if batch.len() == 100 || i + 1 == n {
            while let Some(done) = batch.join_next().await {
                match done.expect("client task") {
                    Ok(ws) => open.push(ws),
                    Err((status, body)) => panic!("connection {i}: refused {status} {body}"),
                }
            }
        }
    }
    open
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_thousand_receivers_under_a_soft_fd_limit_of_1024() {
    raise_own_limit(3_300);
    let server = Server::process_ulimit(
        "-Sn 1024",
        &[
            ("CONCURRENT_LIMIT_WHITELIST", "127.0.0.1"),
            ("LOG_REQUESTS", "NO"),
        ],
    );
    let receivers = open_many(&server, "/fd/k/receive", 3_000).await;
    server.wait_waiting(3_000).await;
    let log = server.log_text();
    assert!(log.contains("open files limit"), "{log}");
    drop(receivers);
}

/// Reads until the peer closes; `true` at EOF or reset, within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Opens `n` TCP connections to `addr` that send nothing; those that connect in time.
async fn idle_connections(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut open = Vec::with_capacity(n);
    for _ in 0..n {
        if let Ok(Ok(s)) = tokio::time::timeout(STEP, TcpStream::connect(addr)).await {
            open.push(s);
        }
    }
    open
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_metrics_connections_do_not_starve_the_streaming_port() {
    raise_own_limit(600);
    // Soft and hard limit 256: the server cannot raise it, and 300 idle
    // metrics connections would take every descriptor it has.
    let server = Server::process_ulimit("-n 256", &[("UPGRADE_TIMEOUT_SECONDS", "120")]);
    let mut idle = idle_connections(server.metrics_addr(), 300).await;
    assert_eq!(idle.len(), 300);
    // Beyond the cap the server closes them at once (long before the head timeout).
    let mut closing = JoinSet::new();
    for mut s in idle.drain(..) {
        closing.spawn(async move { closed_within(&mut s, STEP).await.then_some(()).ok_or(s) });
    }
    let (mut closed, mut held) = (0, Vec::new());
    while let Some(done) = closing.join_next().await {
        match done.expect("reader task") {
            Ok(()) => closed += 1,
            Err(s) => held.push(s),
        }
    }
    assert_eq!((closed, held.len()), (300 - 64, 64));
    // The streaming port still serves.
    let mut receiver = ws(&server.url("/starve/k/receive")).await;
    assert_eq!(get(server.addr, "/").0, 200);
    close_quietly(&mut receiver).await;
    drop(held);
}

async fn close_quietly(ws: &mut Ws) {
    let _ = tokio::time::timeout(STEP, futures_util::SinkExt::close(ws)).await;
}

#[tokio::test(start_paused = true)]
async fn idle_metrics_connections_close_beyond_the_cap_at_once_and_the_rest_at_the_head_timeout() {
    raise_own_limit(700);
    let server = Server::start_here(&[
        ("METRICS_ADDRESS", "127.0.0.1:0"),
        ("UPGRADE_TIMEOUT_SECONDS", "5"),
    ])
    .await;
    let start = tokio::time::Instant::now();
    // One keep-alive client: a request answered, then silence.
    let mut keep_alive = tokio::time::timeout(STEP, TcpStream::connect(server.metrics_addr()))
        .await
        .expect("connect in time")
        .unwrap();
    tokio::time::timeout(
        STEP,
        keep_alive.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
    )
    .await
    .expect("sent in time")
    .unwrap();
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(STEP, keep_alive.read(&mut answer))
        .await
        .expect("answer in time")
        .unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        &answer[..n]
    );
    let mut idle = idle_connections(server.metrics_addr(), 299).await;
    idle.insert(0, keep_alive);
    let mut closing = JoinSet::new();
    for mut s in idle {
        closing.spawn(async move {
            assert!(
                closed_within(&mut s, Duration::from_secs(60)).await,
                "never closed"
            );
            start.elapsed()
        });
    }
    let mut at_once = 0;
    let mut at_timeout = 0;
    while let Some(done) = closing.join_next().await {
        let after = done.expect("reader task");
        if after < Duration::from_secs(1) {
            at_once += 1;
        } else {
            assert!(after >= Duration::from_secs(5), "{after:?}");
            assert!(after < Duration::from_secs(7), "{after:?}");
            at_timeout += 1;
        }
    }
    assert_eq!((at_once, at_timeout), (300 - 64, 64));
    // The listener serves again once they are gone.
    let (status, body) = tokio::task::spawn_blocking({
        let addr = server.metrics_addr();
        move || get(addr, "/healthz")
    })
    .await
    .unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
}

/// The backlog of the socket listening on `port`, as `ss -ltn` shows it
/// (Send-Q of a listening socket).
fn backlog(port: u16) -> u32 {
    let out = Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .expect("run ss (Debian package iproute2)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no listening socket on port {port}: {text:?}"));
    line.split_whitespace()
        .nth(2)
        .and_then(|q| q.parse().ok())
        .unwrap_or_else(|| panic!("no Send-Q in {line:?}"))
}

fn somaxconn() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096)
}

#[test]
fn listeners_have_a_backlog_of_4096_or_listen_backlog() {
    let cap = somaxconn();
    let server = Server::process(&[]);
    assert_eq!(backlog(server.addr.port()), 4096.min(cap), "http");
    assert_eq!(
        backlog(server.metrics_addr().port()),
        4096.min(cap),
        "metrics"
    );
    drop(server);
    let server = Server::process(&[("LISTEN_BACKLOG", "1000")]);
    assert_eq!(backlog(server.addr.port()), 1000.min(cap));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_1000_connects_is_all_answered() {
    raise_own_limit(2_300);
    let server = Server::start(&[
        ("CONCURRENT_LIMIT_WHITELIST", "127.0.0.1"),
        ("LOG_REQUESTS", "NO"),
    ]);
    let mut burst = JoinSet::new();
    for _ in 0..1_000 {
        let url = server.url("/burst/k/receive");
        burst.spawn(async move { try_ws(&url).await });
    }
    let mut open = Vec::new();
    while let Some(done) = burst.join_next().await {
        match done.expect("client task") {
            Ok(ws) => open.push(ws),
            Err((status, body)) => panic!("refused {status} {body}"),
        }
    }
    server.wait_waiting(1_000).await;
    drop(open);
}
