//! Test harness: one [`Server`] type with three ways to run the server under
//! test, raw HTTP and WebSocket clients, all bounded in time.
//!
//! - [`Server::start`]: in this process through the library's `run()`, on its
//!   own runtime thread (fast; the default).
//! - [`Server::start_here`]: `run()` on the test's own runtime, so a test under
//!   tokio's paused clock drives the server's timers too.
//! - [`Server::process`]: the real binary, for what needs the process itself
//!   (environment and `.env`, exit codes, signals, the log).
//!
//! Tests wait for what the server reports (its metrics), never for log text
//! or a sleep.
#![allow(dead_code)]
// Shared by several test crates: `pub` is how each crate reaches it.
#![allow(unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod coordinator;
pub mod hook;
pub mod http;
pub mod media;
pub mod raw;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use ws_stream_server::config::Config;
use ws_stream_server::{Listeners, Observer};

pub const STEP: Duration = Duration::from_secs(10);

/// A server under test; stopped (or killed) when dropped.
pub struct Server {
    pub addr: SocketAddr,
    https: Option<SocketAddr>,
    operator: Option<SocketAddr>,
    backend: Backend,
}

enum Backend {
    InProcess {
        observer: Observer,
        stop: Option<oneshot::Sender<()>>,
        done: Option<oneshot::Receiver<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
    Process {
        child: Child,
        log: Arc<Mutex<Vec<String>>>,
        _dir: tempfile::TempDir,
    },
}

/// `vars` over the harness defaults: any free port on 127.0.0.1.
fn config(bind: &str, vars: &[(&str, &str)]) -> Config {
    let lookup = |name: &str| {
        vars.iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
            .or_else(|| match name {
                "HTTP_PORT" => Some("0".to_owned()),
                "BIND_ADDRESS" => Some(bind.to_owned()),
                _ => None,
            })
    };
    match Config::from_lookup(lookup) {
        Ok(loaded) => loaded.config,
        Err(errors) => panic!("bad test configuration {vars:?}: {errors}"),
    }
}

fn addresses(listeners: &Listeners) -> (SocketAddr, Option<SocketAddr>, Option<SocketAddr>) {
    let local = |l: &tokio::net::TcpListener| l.local_addr().expect("listener address");
    (
        local(&listeners.plain),
        listeners.tls.as_ref().map(local),
        listeners.operator.as_ref().map(local),
    )
}

impl Server {
    /// `run()` in this process, on its own runtime thread, on 127.0.0.1:0.
    pub fn start(vars: &[(&str, &str)]) -> Server {
        Self::start_on("127.0.0.1", vars)
    }

    pub fn start_on(bind: &str, vars: &[(&str, &str)]) -> Server {
        let config = config(bind, vars);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let (done_tx, done) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("server runtime");
            runtime.block_on(async move {
                let server = ws_stream_server::Server::new(config.clone()).expect("server starts");
                let listeners = Listeners::bind(&config).await.expect("bind");
                let _ = ready_tx.send((addresses(&listeners), server.observer()));
                server
                    .run(listeners, async {
                        let _ = stopped.await;
                    })
                    .await;
            });
            // The runtime is gone: every task of the server has ended.
            drop(runtime);
            let _ = done_tx.send(());
        });
        let (addresses, observer) = ready_rx
            .recv_timeout(STEP)
            .expect("in-process server started");
        Self::in_process(addresses, observer, stop, done, Some(thread))
    }

    fn in_process(
        (addr, https, operator): (SocketAddr, Option<SocketAddr>, Option<SocketAddr>),
        observer: Observer,
        stop: oneshot::Sender<()>,
        done: oneshot::Receiver<()>,
        thread: Option<std::thread::JoinHandle<()>>,
    ) -> Server {
        Server {
            addr,
            https,
            operator,
            backend: Backend::InProcess {
                observer,
                stop: Some(stop),
                done: Some(done),
                thread,
            },
        }
    }

    /// `run()` on the calling test's runtime (for tests under tokio's paused clock).
    pub async fn start_here(vars: &[(&str, &str)]) -> Server {
        let config = config("127.0.0.1", vars);
        let server = ws_stream_server::Server::new(config.clone()).expect("server starts");
        let listeners = Listeners::bind(&config).await.expect("bind");
        let addresses = addresses(&listeners);
        let observer = server.observer();
        let (stop, stopped) = oneshot::channel::<()>();
        let (done_tx, done) = oneshot::channel::<()>();
        tokio::spawn(async move {
            server
                .run(listeners, async {
                    let _ = stopped.await;
                })
                .await;
            let _ = done_tx.send(());
        });
        Self::in_process(addresses, observer, stop, done, None)
    }

    /// The real binary with a clean environment plus `vars`, on 127.0.0.1:0; its
    /// metrics listener is on too (127.0.0.1:0) unless `vars` set one.
    pub fn process(vars: &[(&str, &str)]) -> Server {
        Self::process_in(tempfile::tempdir().expect("temp dir"), vars)
    }

    /// As [`Server::process`], started in `dir` (where a `.env` may wait).
    pub fn process_in(dir: tempfile::TempDir, vars: &[(&str, &str)]) -> Server {
        Self::spawn(
            Command::new(env!("CARGO_BIN_EXE_ws-stream-server")),
            dir,
            vars,
        )
    }

    /// As [`Server::process`], under the shell's `ulimit {limit}` (`-Sn 1024`:
    /// a soft open-files limit of 1,024; `-n 256`: soft and hard), set by a
    /// shell that then execs the binary (so the pid is the server's).
    pub fn process_ulimit(limit: &str, vars: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new("/bin/bash");
        cmd.arg("-c")
            .arg(format!("ulimit {limit} && exec \"$0\""))
            .arg(env!("CARGO_BIN_EXE_ws-stream-server"));
        Self::spawn(cmd, tempfile::tempdir().expect("temp dir"), vars)
    }

    fn spawn(mut cmd: Command, dir: tempfile::TempDir, vars: &[(&str, &str)]) -> Server {
        cmd.env_clear()
            .current_dir(dir.path())
            .env("HTTP_PORT", "0")
            .env("BIND_ADDRESS", "127.0.0.1")
            .env("METRICS_ADDRESS", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start ws-stream-server");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line.clone());
                sink.lock().unwrap().push(line);
            }
        });
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let tls = vars.iter().any(|(k, _)| *k == "SSL_CERT");
        let (mut addr, mut https, mut operator) = (None, None, None);
        let deadline = Instant::now() + STEP;
        // The banner lines: every listener says where it listens before anything is served.
        while addr.is_none() || operator.is_none() || (tls && https.is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                panic!(
                    "server did not report its addresses; log: {:?}",
                    log.lock().unwrap()
                );
            };
            let after = |marker: &str| -> Option<SocketAddr> {
                let rest = line.split(marker).nth(1)?;
                rest.split(|c: char| c == '/' || c.is_whitespace())
                    .next()?
                    .parse()
                    .ok()
            };
            addr = addr.or_else(|| after("listening on http://"));
            https = https.or_else(|| after("listening on https://"));
            operator = operator.or_else(|| after("metrics on http://"));
        }
        Server {
            addr: addr.expect("address"),
            https,
            operator,
            backend: Backend::Process {
                child,
                log,
                _dir: dir,
            },
        }
    }

    /// The TLS listener's address.
    pub fn https_addr(&self) -> SocketAddr {
        self.https.expect("the server has a TLS listener")
    }

    /// The operator listener's address (`METRICS_ADDRESS`).
    pub fn metrics_addr(&self) -> SocketAddr {
        self.operator.expect("the server has a metrics listener")
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// The Prometheus text, as `/metrics` serves it.
    pub fn metrics_text(&self) -> String {
        match &self.backend {
            Backend::InProcess { observer, .. } => observer.metrics_text(),
            Backend::Process { .. } => get(self.metrics_addr(), "/metrics").1,
        }
    }

    /// The value of one sample (`name` with its labels, as in the text); 0 when absent.
    pub fn metric(&self, sample: &str) -> f64 {
        metric_in(&self.metrics_text(), sample).unwrap_or(0.0)
    }

    /// Waits until `sample` satisfies `ok` (checked every few ms of the test's
    /// clock, so it also works under a paused clock).
    pub async fn wait_metric(&self, sample: &str, ok: impl Fn(f64) -> bool) {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let text = self.metrics_text();
            if ok(metric_in(&text, sample).unwrap_or(0.0)) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{sample} never reached the expected value:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until `n` receivers or probes are playing (past the publisher's arrival).
    pub async fn wait_playing(&self, n: usize) {
        self.wait_metric("ws_stream_receivers{state=\"playing\"}", |v| v == n as f64)
            .await;
    }

    /// Waits until `n` receivers or probes in all have started playing since the start.
    pub async fn wait_started(&self, n: usize) {
        self.wait_metric("ws_stream_receivers_started_total", |v| v >= n as f64)
            .await;
    }

    /// Waits until `n` receivers or probes wait for a publisher.
    pub async fn wait_waiting(&self, n: usize) {
        self.wait_metric("ws_stream_receivers{state=\"waiting\"}", |v| v == n as f64)
            .await;
    }

    /// Waits until `n` sessions of `kind` are open.
    pub async fn wait_connections(&self, kind: &str, n: usize) {
        let sample = format!("ws_stream_connections{{kind=\"{kind}\"}}");
        self.wait_metric(&sample, |v| v == n as f64).await;
    }

    /// Waits until the coordinator link is up (`true`) or down.
    pub async fn wait_control(&self, up: bool) {
        self.wait_metric("ws_stream_control_connected", |v| {
            v == f64::from(u8::from(up))
        })
        .await;
    }

    /// Waits until `ip` holds `n` slots of the per-IP limit (in-process only).
    pub async fn wait_ip_slots(&self, ip: std::net::IpAddr, n: u32) {
        let deadline = tokio::time::Instant::now() + STEP;
        while self.ip_slots(ip) != n {
            if tokio::time::Instant::now() > deadline {
                panic!("{ip} holds {} slots, not {n}", self.ip_slots(ip));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until `channel` has no publisher, not even one still being
    /// admitted (in-process only): a publisher dropped right after its
    /// upgrade may not have started its session yet.
    pub async fn wait_channel_free(&self, channel: &str) {
        let Backend::InProcess { observer, .. } = &self.backend else {
            panic!("wait_channel_free needs an in-process server");
        };
        let deadline = tokio::time::Instant::now() + STEP;
        while observer.has_publisher(channel) {
            if tokio::time::Instant::now() > deadline {
                panic!("{channel} still has a publisher");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Streaming connections `ip` holds against the per-IP limit (in-process only).
    pub fn ip_slots(&self, ip: std::net::IpAddr) -> u32 {
        match &self.backend {
            Backend::InProcess { observer, .. } => observer.ip_slots(ip),
            Backend::Process { .. } => panic!("ip_slots needs an in-process server"),
        }
    }

    /// Stops an in-process server as a signal would; returns how long the drain took.
    pub async fn shutdown(&mut self) -> Duration {
        let Backend::InProcess { stop, done, .. } = &mut self.backend else {
            panic!("shutdown() is for in-process servers; use stop()");
        };
        let started = Instant::now();
        if let Some(stop) = stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = done.take() {
            tokio::time::timeout(STEP * 3, done)
                .await
                .expect("the server stopped in time")
                .expect("the server task ended");
        }
        started.elapsed()
    }

    /// The process's log so far (stdout and stderr).
    pub fn log_text(&self) -> String {
        match &self.backend {
            Backend::Process { log, .. } => log.lock().unwrap().join("\n"),
            Backend::InProcess { .. } => panic!("log_text() needs Server::process"),
        }
    }

    /// Waits until a line of the process's log contains `needle`: for tests of
    /// the log itself, never as synchronisation.
    pub async fn wait_for_log(&self, needle: &str) {
        let deadline = tokio::time::Instant::now() + STEP;
        while !self.log_text().contains(needle) {
            if tokio::time::Instant::now() > deadline {
                panic!("no log line with {needle:?}:\n{}", self.log_text());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn child(&self) -> &Child {
        match &self.backend {
            Backend::Process { child, .. } => child,
            Backend::InProcess { .. } => panic!("this needs Server::process"),
        }
    }

    /// Sends SIGTERM to the process and waits for its exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let Backend::Process { child, .. } = &mut self.backend else {
            panic!("stop() is for Server::process; use shutdown()");
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        wait_exit(child, STEP)
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child().id()))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Open file descriptors of the server process.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child().id()))
            .map(|d| d.count())
            .expect("read /proc fd")
    }

    pub fn pid(&self) -> u32 {
        self.child().id()
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.backend {
            Backend::Process { child, .. } => matches!(child.try_wait(), Ok(None)),
            Backend::InProcess { done, .. } => done
                .as_mut()
                .is_some_and(|d| matches!(d.try_recv(), Err(oneshot::error::TryRecvError::Empty))),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        match &mut self.backend {
            Backend::Process { child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Backend::InProcess { stop, thread, .. } => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
                // A thread server ends within its grace period; never block a panicking test forever.
                if let Some(thread) = thread.take() {
                    let deadline = Instant::now() + STEP;
                    while !thread.is_finished() && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        }
    }
}

/// One sample's value from a Prometheus exposition text.
pub fn metric_in(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(sample) && l[sample.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("server did not exit in {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs the binary to completion with `vars` (for start-up failures).
pub fn run_to_exit(vars: &[(&str, &str)]) -> (i32, String) {
    let run = run_args(&[], vars, None);
    (run.code, run.stdout + &run.stderr)
}

/// How a run of the binary ended.
#[derive(Debug)]
pub struct Exit {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the binary to completion with `args` and `vars`, in a fresh working
/// directory holding `dotenv` as its `.env` when given.
pub fn run_args(args: &[&str], vars: &[(&str, &str)], dotenv: Option<&str>) -> Exit {
    let dir = tempfile::tempdir().expect("temp dir");
    if let Some(text) = dotenv {
        std::fs::write(dir.path().join(".env"), text).expect("write .env");
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ws-stream-server"));
    cmd.env_clear()
        .current_dir(dir.path())
        .args(args)
        .env("HTTP_PORT", "0")
        .env("BIND_ADDRESS", "127.0.0.1");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let status = wait_exit(&mut child, STEP);
    let mut stdout = String::new();
    let mut stderr = String::new();
    let _ = child
        .stdout
        .take()
        .map(|mut s| s.read_to_string(&mut stdout));
    let _ = child
        .stderr
        .take()
        .map(|mut s| s.read_to_string(&mut stderr));
    Exit {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

/// A raw HTTP/1.1 exchange: returns status, head and body.
pub fn http(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut stream = StdTcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(STEP)).unwrap();
    stream.write_all(request.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    (status, head.to_owned(), body.to_owned())
}

/// `GET path` with `Connection: close` and no upgrade headers.
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    );
    (status, body)
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket; `Err((status, body))` when the server answers without upgrading.
pub async fn try_ws(url: &str) -> Result<Ws, (u16, String)> {
    match tokio::time::timeout(STEP, tokio_tungstenite::connect_async(url)).await {
        Err(_) => panic!("connect to {url} timed out"),
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tungstenite::Error::Http(resp))) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((resp.status().as_u16(), body))
        }
        Ok(Err(e)) => panic!("connect to {url}: {e}"),
    }
}

pub async fn ws(url: &str) -> Ws {
    match try_ws(url).await {
        Ok(ws) => ws,
        Err((status, body)) => panic!("{url} refused: {status} {body}"),
    }
}

/// What a receiver saw.
#[derive(Debug, PartialEq)]
pub enum Got {
    Binary(Vec<u8>),
    Text(String),
    Closed(Option<u16>),
}

/// The next data message or the close (pings and pongs are skipped).
pub async fn next(ws: &mut Ws) -> Got {
    next_within(ws, STEP).await.expect("no message in time")
}

pub async fn next_within(ws: &mut Ws, limit: Duration) -> Option<Got> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next()).await.ok()?;
        return Some(match msg {
            None => Got::Closed(None),
            Some(Err(_)) => Got::Closed(None),
            Some(Ok(Message::Binary(b))) => Got::Binary(b.to_vec()),
            Some(Ok(Message::Text(t))) => Got::Text(t.to_string()),
            Some(Ok(Message::Close(frame))) => Got::Closed(frame.map(|f| u16::from(f.code))),
            Some(Ok(_)) => continue,
        });
    }
}

/// The next binary message, skipping heartbeats.
pub async fn next_binary(ws: &mut Ws) -> Vec<u8> {
    loop {
        match next(ws).await {
            Got::Binary(b) => return b,
            Got::Text(t) if t == "h" => continue,
            other => panic!("expected a chunk, got {other:?}"),
        }
    }
}

/// Waits for the close, skipping heartbeats; returns the close code.
pub async fn expect_close(ws: &mut Ws) -> Option<u16> {
    loop {
        match next(ws).await {
            Got::Closed(code) => return code,
            Got::Text(t) if t == "h" => continue,
            other => panic!("expected the close, got {other:?}"),
        }
    }
}

pub async fn send(ws: &mut Ws, data: Vec<u8>) {
    tokio::time::timeout(STEP, ws.send(Message::Binary(data.into())))
        .await
        .expect("send timed out")
        .expect("send failed");
}

pub async fn close(mut ws: Ws) {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = tokio::time::timeout(STEP, ws.close(Some(frame))).await;
    let _ = tokio::time::timeout(STEP, async { while ws.next().await.is_some() {} }).await;
}

/// Drops the connection with a TCP reset (zero linger) instead of a close.
pub fn reset(ws: Ws) {
    if let MaybeTlsStream::Plain(tcp) = ws.get_ref() {
        let _ = tcp.set_zero_linger();
    }
    drop(ws);
}

/// Deterministic pseudo-random bytes.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
