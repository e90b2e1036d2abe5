//! The ceiling: a minimal relay, run as a child process like a real server.
//! It answers any `GET /{channel}/{key}/{kind}` with a bare 101, then copies
//! the publisher's bytes verbatim (the publisher already sends server-style
//! unmasked frames) to the channel's receivers registered before it: one task
//! per receiver with a bounded queue of shared `Bytes`, written with `writev`.
//! No parsing, no cache, no policy: the publisher waits for the slowest queue.

use std::collections::HashMap;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const MAX_HEAD: usize = 8192;
const QUEUE: usize = 64;
const BATCH: usize = 64;
const READ_CHUNK: usize = 256 * 1024;

type Channels = Arc<Mutex<HashMap<String, Vec<mpsc::Sender<Bytes>>>>>;

/// Serves until killed; prints `relay listening on ADDR` first.
pub(crate) async fn serve(listen: SocketAddr) -> Result<()> {
    // The server's default listen backlog (LISTEN_BACKLOG), so that `burst`
    // compares like with like.
    let socket = if listen.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(listen)?;
    let listener: TcpListener = socket.listen(4096)?;
    println!("relay listening on {}", listener.local_addr()?);
    let channels: Channels = Arc::default();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("relay: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        let channels = channels.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, channels).await {
                eprintln!("relay: {e:#}");
            }
        });
    }
}

async fn connection(mut stream: TcpStream, channels: Channels) -> Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() >= MAX_HEAD || stream.read_buf(&mut buf).await? == 0 {
            bail!("no request head");
        }
    };
    let head = buf.split_to(end);
    let line = String::from_utf8_lossy(&head);
    let path = line.split_whitespace().nth(1).context("no path")?;
    let mut parts = path.trim_start_matches('/').split('/');
    let (channel, kind) = (
        parts.next().unwrap_or_default(),
        parts.nth(1).unwrap_or_default(),
    );
    let channel = channel.to_owned();
    let ok =
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    match kind {
        "publish" => {
            let receivers = lock(&channels).remove(&channel).unwrap_or_default();
            stream.write_all(ok).await?;
            publisher(stream, buf, receivers).await
        }
        _ => {
            let (tx, rx) = mpsc::channel(QUEUE);
            lock(&channels).entry(channel).or_default().push(tx);
            stream.write_all(ok).await?;
            receiver(stream, rx).await
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the map inconsistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn publisher(
    mut stream: TcpStream,
    mut buf: BytesMut,
    mut receivers: Vec<mpsc::Sender<Bytes>>,
) -> Result<()> {
    loop {
        if !buf.is_empty() {
            let piece = buf.split().freeze();
            let mut alive = Vec::with_capacity(receivers.len());
            for tx in receivers.drain(..) {
                if tx.send(piece.clone()).await.is_ok() {
                    alive.push(tx);
                }
            }
            receivers = alive;
        }
        buf.reserve(READ_CHUNK);
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

async fn receiver(stream: TcpStream, mut rx: mpsc::Receiver<Bytes>) -> Result<()> {
    let (mut read, mut write) = stream.into_split();
    // Client heartbeats are read and dropped; EOF from the client ends the
    // connection even while no publisher has come.
    let mut drain = tokio::spawn(async move {
        let mut b = vec![0u8; 1024];
        while matches!(read.read(&mut b).await, Ok(n) if n > 0) {}
    });
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            _ = &mut drain => return Ok(()),
            n = rx.recv_many(&mut batch, BATCH) => if n == 0 { break },
        }
        write_all(&mut write, &batch).await?;
        batch.clear();
    }
    drain.abort();
    write.shutdown().await?;
    Ok(())
}

async fn write_all(w: &mut tokio::net::tcp::OwnedWriteHalf, pieces: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = pieces.iter().map(|b| IoSlice::new(b)).collect();
    ws_stream_server::frames::write_all_vectored(w, &mut slices).await
}
