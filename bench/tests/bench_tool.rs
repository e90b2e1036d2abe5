//! The benchmark tool checks what it measures: a clean run through the real
//! server and through its ceiling relay reports no errors; a relay that drops
//! a chunk is caught; non-loopback targets are refused. No timing assertions.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(90);

/// Runs the tool with `args`, killed if it outlives `LIMIT`.
fn bench(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ws-stream-bench"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ws-stream-bench");
    let started = Instant::now();
    while child.try_wait().expect("poll the tool").is_none() {
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            panic!("ws-stream-bench ran longer than {LIMIT:?}");
        }
        thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("tool output")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The real server, in-process through the library's `run()`, on 127.0.0.1:0;
/// stopped when dropped.
struct Server {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        Self::start_with(&[])
    }

    /// With `extra` over the defaults.
    fn start_with(extra: &[(&str, &str)]) -> Server {
        let mut vars = vec![
            ("HTTP_PORT", "0"),
            ("BIND_ADDRESS", "127.0.0.1"),
            ("MAX_IP_CONCURRENT_CONNECTIONS", "1000"),
        ];
        vars.extend_from_slice(extra);
        let get = |name: &str| {
            vars.iter()
                .rev()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        let config = ws_stream_server::config::Config::from_lookup(get)
            .expect("valid configuration")
            .config;
        let (addr_tx, addr_rx) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            runtime.block_on(async move {
                let listeners = ws_stream_server::Listeners::bind(&config)
                    .await
                    .expect("bind");
                let _ = addr_tx.send(listeners.plain.local_addr().expect("address"));
                let shutdown = async {
                    let _ = stopped.await;
                };
                ws_stream_server::run(config, listeners, shutdown)
                    .await
                    .expect("server runs");
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server address");
        Server {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn fanout_through_the_real_server_and_the_ceiling_has_no_errors() {
    let srv = Server::start();
    let target = format!("ws://{}", srv.addr);
    // The server runs in this process: its CPU time is this process's.
    let pid = std::process::id().to_string();
    let o = bench(&[
        "--target",
        &target,
        "--server-pid",
        &pid,
        "--runs",
        "1",
        "--duration",
        "1",
        "fanout",
        "--receivers",
        "2",
        "--chunk-size",
        "10000",
        "--rate",
        "8M",
        "--verify-every",
        "1",
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("errors over all runs: 0"), "{out}");
    assert!(out.contains("| ours | ceiling |"), "{out}");
    assert!(out.contains("| server CPU s |"), "{out}");
}

#[test]
fn unwindowed_max_rate_through_the_real_server_cuts_nobody_and_loses_nothing() {
    // No window: the publisher sends as fast as its socket accepts, so only the
    // server's ingest hold keeps 20 receivers within their bound. Loss only, no timing.
    let srv = Server::start();
    let target = format!("ws://{}", srv.addr);
    let o = bench(&[
        "--target",
        &target,
        "--runs",
        "1",
        "--duration",
        "3",
        "--no-ceiling",
        "fanout",
        "--receivers",
        "20",
        "--profile",
        "max",
        "--window-mb",
        "0",
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("no window"), "{out}");
    assert!(out.contains("errors over all runs: 0"), "{out}");
}

#[test]
fn a_cascade_publishes_on_the_origin_and_receives_on_its_edges() {
    let origin = Server::start();
    let origin_url = format!("ws://{}", origin.addr);
    let edges: Vec<Server> = (0..2)
        .map(|_| {
            Server::start_with(&[
                ("ORIGIN_URLS", origin_url.as_str()),
                ("EDGE_LINGER_SECONDS", "0"),
            ])
        })
        .collect();
    let receive: Vec<String> = edges.iter().map(|e| format!("ws://{}", e.addr)).collect();
    let receive = receive.join(",");
    let pid = std::process::id().to_string();
    let o = bench(&[
        "--publish-target",
        &origin_url,
        "--server-pid",
        &pid,
        "--receive-target",
        &receive,
        "--receive-pid",
        &pid,
        "--no-ceiling",
        "--runs",
        "1",
        "--duration",
        "1",
        "fanout",
        "--receivers",
        "4",
        "--chunk-size",
        "10000",
        "--rate",
        "8M",
        "--verify-every",
        "1",
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("errors over all runs: 0"), "{out}");
    assert!(
        out.contains("| cascade | direct | cascade/direct |"),
        "{out}"
    );
    let edge_cpu = out
        .lines()
        .find(|l| l.starts_with("| receive targets' CPU s per Gbit |"))
        .unwrap_or_else(|| panic!("no edge CPU row:\n{out}"));
    let cascade_cell = edge_cpu.split('|').nth(2).map(str::trim);
    assert!(
        cascade_cell.is_some_and(|c| c != "–"),
        "the cascade side is measured: {edge_cpu}"
    );
}

#[test]
fn non_loopback_targets_are_refused() {
    let o = bench(&["--target", "ws://192.0.2.1:80", "--runs", "1", "fanout"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("not a loopback address"), "{out}");
}

// === a relay that loses one chunk ===

fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        if s.read(&mut b).unwrap_or(0) == 0 {
            break;
        }
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Reads one masked client frame; returns (first byte, unmasked payload).
fn read_frame(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).ok()?;
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).ok()?;
            u16::from_be_bytes(l) as usize
        }
        127 => {
            let mut l = [0u8; 8];
            s.read_exact(&mut l).ok()?;
            u64::from_be_bytes(l) as usize
        }
        n => n as usize,
    };
    let mut key = [0u8; 4];
    s.read_exact(&mut key).ok()?;
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).ok()?;
    for (i, b) in p.iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
    Some((h[0], p))
}

/// Forwards the publisher's frames to the receivers, except binary frame `skip`.
fn lossy_relay(listener: TcpListener, skip: usize) {
    let receivers: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    for conn in listener.incoming().take(16) {
        let Ok(mut s) = conn else { continue };
        let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
        let head = read_head(&mut s);
        let _ = s.write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n");
        if !head.contains("/publish ") {
            receivers.lock().unwrap().push(s);
            continue;
        }
        let receivers = receivers.clone();
        thread::spawn(move || {
            let mut binary = 0;
            while let Some((first, payload)) = read_frame(&mut s) {
                if first & 0x0f == 2 {
                    binary += 1;
                    if binary == skip + 1 {
                        continue;
                    }
                }
                let mut frame = vec![first, 127];
                frame.extend_from_slice(&(payload.len() as u64).to_be_bytes());
                frame.extend_from_slice(&payload);
                for r in receivers.lock().unwrap().iter_mut() {
                    let _ = r.write_all(&frame);
                }
            }
        });
    }
}

#[test]
fn a_relay_that_drops_a_chunk_is_caught() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    thread::spawn(move || lossy_relay(listener, 5));
    let target = format!("ws://{addr}");
    let o = bench(&[
        "--target",
        &target,
        "--no-ceiling",
        "--runs",
        "1",
        "--duration",
        "1",
        "fanout",
        "--receivers",
        "1",
        "--chunk-size",
        "1000",
        "--rate",
        "400k",
    ]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("lost 1,"), "{out}");
}
