//! Test harness: the real binary on an ephemeral loopback port, raw HTTP and
//! WebSocket clients, all bounded in time.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod coordinator;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const STEP: Duration = Duration::from_secs(10);

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts the binary with a clean environment plus `vars`, on 127.0.0.1:0.
    pub fn start(vars: &[(&str, &str)]) -> Server {
        Self::start_on("127.0.0.1", vars)
    }

    pub fn start_on(bind: &str, vars: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ws-stream-server"));
        cmd.env_clear()
            .current_dir(dir.path())
            .env("HTTP_PORT", "0")
            .env("BIND_ADDRESS", bind)
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
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(rest.trim().to_owned());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(STEP) {
            Ok(a) => a.parse().expect("address in the start-up line"),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "server did not report its address; log: {:?}",
                    log.lock().unwrap()
                );
            }
        };
        Server {
            child,
            addr,
            log,
            _dir: dir,
        }
    }

    /// The TLS listener's address, from its start-up line.
    pub fn https_addr(&self) -> SocketAddr {
        self.wait_log("listening on https://");
        let log = self.log_text();
        let rest = log.split("listening on https://").nth(1).unwrap_or("");
        rest.split_whitespace()
            .next()
            .unwrap_or("")
            .parse()
            .expect("https address")
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + STEP;
        while Instant::now() < deadline {
            if self.log_text().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no log line with {needle:?}; log:\n{}", self.log_text());
    }

    /// Waits until `needle` appears on at least `count` log lines.
    pub fn wait_log_count(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + STEP;
        while Instant::now() < deadline {
            if self
                .log
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains(needle))
                .count()
                >= count
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "fewer than {count} log lines with {needle:?}; log:\n{}",
            self.log_text()
        );
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + STEP;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("server did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Open file descriptors of the server process.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .expect("read /proc fd")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
    let deadline = Instant::now() + STEP;
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("server with {args:?} {vars:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
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
