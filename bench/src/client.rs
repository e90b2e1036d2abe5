//! The load generator's WebSocket ends: the upgrade handshake, frame heads,
//! receivers (fastwebsockets, reading with `read_buf`, no zero-fill) and the
//! heartbeat every real client sends.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use fastwebsockets::{
    after_handshake_split, FragmentCollectorRead, Frame, OpCode, Role, WebSocketError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

/// Interval of the `h` text message clients send.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(20);
const MAX_HEAD: usize = 8192;
/// Retries of `peek` while the response head is incomplete (2 ms apart).
const MAX_PEEKS: usize = 2500;

/// Where connections go and how publishers frame their chunks.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub addr: SocketAddr,
    pub host: String,
    /// Publishers mask their frames (a real server); the ceiling relay gets
    /// the unmasked frames a server would send, and copies them verbatim.
    pub masked: bool,
    /// Receivers use `GET /{channel}/{key}/play` (plain HTTP, chunked body)
    /// instead of a WebSocket `receive`.
    pub play: bool,
}

/// A TCP connection to `ep` with no Nagle delay; `rcvbuf` shrinks the receive buffer first.
async fn open(ep: &Endpoint, rcvbuf: Option<u32>) -> Result<TcpStream> {
    let socket = if ep.addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(size) = rcvbuf {
        socket.set_recv_buffer_size(size)?;
    }
    let stream = socket.connect(ep.addr).await.context("connect")?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Opens a WebSocket to `path`; `rcvbuf` shrinks the receive buffer first.
pub(crate) async fn connect(ep: &Endpoint, path: &str, rcvbuf: Option<u32>) -> Result<TcpStream> {
    let mut stream = open(ep, rcvbuf).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        ep.host
    );
    stream.write_all(request.as_bytes()).await?;
    let head = read_head(&mut stream).await?;
    let status = head.lines().next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 101") {
        bail!("upgrade refused: {status:?}");
    }
    Ok(stream)
}

/// Sends `GET path` for HTTP playback; the answer's head comes once the
/// channel has a publisher, so the reader reads it ([`crate::receiver`]).
pub(crate) async fn request_play(
    ep: &Endpoint,
    path: &str,
    rcvbuf: Option<u32>,
) -> Result<TcpStream> {
    let mut stream = open(ep, rcvbuf).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", ep.host);
    stream.write_all(request.as_bytes()).await?;
    Ok(stream)
}

/// Reads exactly the response head, leaving the first frames in the socket.
async fn read_head(stream: &mut TcpStream) -> Result<String> {
    let mut buf = vec![0u8; MAX_HEAD];
    for _ in 0..MAX_PEEKS {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            bail!("connection closed during the upgrade");
        }
        if let Some(end) = buf[..n].windows(4).position(|w| w == b"\r\n\r\n") {
            let mut head = vec![0u8; end + 4];
            stream.read_exact(&mut head).await?;
            return Ok(String::from_utf8_lossy(&head).into_owned());
        }
        if n == buf.len() {
            bail!("response head larger than {MAX_HEAD} bytes");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    bail!("incomplete response head")
}

/// The head of a final frame; with `mask` the masking key follows the length.
pub(crate) fn frame_head(opcode: u8, len: usize, mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut h = Vec::with_capacity(14);
    h.push(0x80 | opcode);
    let m = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        h.push(m | len as u8);
    } else if len <= 0xFFFF {
        h.push(m | 126);
        h.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        h.push(m | 127);
        h.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(key) = mask {
        h.extend_from_slice(&key);
    }
    h
}

/// A whole text frame `h` as this endpoint's publishers and receivers send it.
pub(crate) fn heartbeat_frame(masked: bool) -> Vec<u8> {
    let key = [0x5a, 0x1b, 0x3c, 0x7d];
    let mut f = frame_head(0x1, 1, masked.then_some(key));
    f.push(if masked { b'h' ^ key[0] } else { b'h' });
    f
}

/// Sends the client heartbeat until cancelled or the socket fails.
pub(crate) async fn heartbeat(mut w: OwnedWriteHalf, masked: bool, stop: CancellationToken) {
    let frame = heartbeat_frame(masked);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {
                if w.write_all(&frame).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = w.shutdown().await;
}

/// What a receiver reads next.
pub(crate) enum Event<'a> {
    Binary(&'a [u8]),
    Close,
}

/// The read side of a receiving WebSocket: whole messages, text ignored.
pub(crate) struct Reader {
    ws: FragmentCollectorRead<OwnedReadHalf>,
}

impl Reader {
    /// Splits `stream`: the write half goes to the heartbeat task.
    pub(crate) fn new(stream: TcpStream, max_message: usize) -> (Reader, OwnedWriteHalf) {
        let (read, write) = stream.into_split();
        // Replies to pings and closes are not needed: the write side is a sink.
        let (mut ws, _) = after_handshake_split(read, tokio::io::sink(), Role::Client);
        ws.set_max_message_size(max_message);
        ws.set_auto_close(true);
        (
            Reader {
                ws: FragmentCollectorRead::new(ws),
            },
            write,
        )
    }

    /// Calls `on` with each message until it returns false, the peer closes,
    /// or the socket fails (`Err`).
    pub(crate) async fn run<F>(&mut self, mut on: F) -> Result<Option<u16>, WebSocketError>
    where
        F: FnMut(Event<'_>) -> bool,
    {
        let mut ignore = |_: Frame<'_>| async { Ok::<(), io::Error>(()) };
        loop {
            let frame = self.ws.read_frame(&mut ignore).await?;
            match frame.opcode {
                OpCode::Binary if !on(Event::Binary(&frame.payload)) => return Ok(None),
                OpCode::Close => {
                    let code = (frame.payload.len() >= 2)
                        .then(|| u16::from_be_bytes([frame.payload[0], frame.payload[1]]));
                    on(Event::Close);
                    return Ok(code);
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_heads_use_the_shortest_length() {
        assert_eq!(frame_head(2, 5, None), vec![0x82, 5]);
        assert_eq!(frame_head(2, 300, None), vec![0x82, 126, 1, 44]);
        let h = frame_head(2, 70_000, Some([1, 2, 3, 4]));
        assert_eq!(h.len(), 14);
        assert_eq!(&h[..2], &[0x82, 0xFF]);
        assert_eq!(&h[10..], &[1, 2, 3, 4]);
    }

    #[test]
    fn heartbeat_frames_are_masked_for_servers() {
        assert_eq!(heartbeat_frame(false), vec![0x81, 1, b'h']);
        let m = heartbeat_frame(true);
        assert_eq!(m.len(), 7);
        assert_eq!(m[6] ^ m[2], b'h');
    }
}
