//! A raw WebSocket client on a TCP socket: a hand-made upgrade, then frames
//! written and read byte for byte, for what a regular client never sends (an
//! unmasked frame, a bad close) or hides (a frame cut short before the FIN).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::STEP;

/// A frame from the server: FIN, RSV bits and opcode (the first byte), payload.
#[derive(Debug, PartialEq, Eq)]
pub struct RawFrame {
    pub first: u8,
    pub payload: Vec<u8>,
}

impl RawFrame {
    pub fn opcode(&self) -> u8 {
        self.first & 0x0F
    }

    /// The code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode() == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// One end of an upgraded connection.
pub struct RawWs {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Largest single read, and the pause after each (a slow reader).
    read_size: usize,
    pause: Option<Duration>,
}

/// A client frame: `first` byte (FIN, RSV, opcode), masked with `mask` if given.
pub fn frame(first: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let bit = if mask.is_some() { 0x80 } else { 0 };
    let mut f = vec![first];
    match payload.len() {
        n if n < 126 => f.push(bit | n as u8),
        n if n < 65536 => {
            f.push(bit | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(bit | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(mask) => {
            f.extend_from_slice(&mask);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
        None => f.extend_from_slice(payload),
    }
    f
}

/// A final, masked client frame of `opcode`.
pub fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(0x80 | opcode, Some([0x37, 0xfa, 0x21, 0x3d]), payload)
}

/// A close frame's payload.
pub fn close_body(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

impl RawWs {
    /// Upgrades `path` on `addr`; panics unless the server answers 101.
    pub async fn connect(addr: SocketAddr, path: &str) -> RawWs {
        Self::connect_with(addr, path, None).await
    }

    /// As [`RawWs::connect`], with the socket's receive buffer set to `recv_buffer` bytes.
    pub async fn connect_with(addr: SocketAddr, path: &str, recv_buffer: Option<u32>) -> RawWs {
        let socket = TcpSocket::new_v4().expect("socket");
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
        }
        let mut stream = tokio::time::timeout(STEP, socket.connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut buf = Vec::new();
        let end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(STEP, stream.read(&mut chunk))
                .await
                .expect("answer in time")
                .expect("read answer");
            assert!(n > 0, "closed before answering: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "not upgraded: {head}");
        buf.drain(..end);
        RawWs {
            stream,
            buf,
            read_size: 64 * 1024,
            pause: None,
        }
    }

    /// Reads at most `read_size` bytes at a time, pausing `pause` after each read.
    pub fn slow(&mut self, read_size: usize, pause: Duration) {
        self.read_size = read_size;
        self.pause = Some(pause);
    }

    /// Back to reading at full speed.
    pub fn fast(&mut self) {
        self.read_size = 64 * 1024;
        self.pause = None;
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        // The server may close before taking it all: what it answers is what is checked.
        let _ = tokio::time::timeout(STEP, self.stream.write_all(bytes)).await;
    }

    /// Reads more bytes into the buffer; false at end of stream (or on a reset).
    async fn fill(&mut self) -> bool {
        if let Some(pause) = self.pause {
            tokio::time::sleep(pause).await;
        }
        let mut chunk = vec![0u8; self.read_size];
        let read = tokio::time::timeout(STEP, self.stream.read(&mut chunk))
            .await
            .expect("the server sent nothing and did not close in time");
        match read {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next whole frame; `None` at end of stream between frames. Panics if
    /// the stream ends inside a frame or a frame is masked.
    pub async fn read_frame(&mut self) -> Option<RawFrame> {
        loop {
            if let Some((len, total)) = parse_head(&self.buf) {
                if self.buf.len() >= total {
                    let first = self.buf[0];
                    let payload = self.buf[total - len..total].to_vec();
                    self.buf.drain(..total);
                    return Some(RawFrame { first, payload });
                }
            }
            if !self.fill().await {
                assert!(
                    self.buf.is_empty(),
                    "the stream ended inside a frame: {} bytes of it, header {:02x?}",
                    self.buf.len(),
                    &self.buf[..self.buf.len().min(10)]
                );
                return None;
            }
        }
    }

    /// Skips data frames up to the close frame; its code (`None`: no close frame before the end).
    pub async fn read_close(&mut self) -> Option<u16> {
        while let Some(frame) = self.read_frame().await {
            if frame.opcode() == 8 {
                return frame.close_code();
            }
        }
        None
    }

    /// True once the server has closed the connection (after its close frame).
    pub async fn ends(&mut self) -> bool {
        self.buf.clear();
        while self.fill().await {
            self.buf.clear();
        }
        true
    }
}

/// (payload length, frame length) once the header is complete; server frames are unmasked.
fn parse_head(buf: &[u8]) -> Option<(usize, usize)> {
    let (&b1, rest) = buf.get(1).map(|b| (b, &buf[2..]))?;
    assert_eq!(b1 & 0x80, 0, "the server sent a masked frame");
    let (len, head) = match b1 & 0x7F {
        126 => (
            u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(rest.get(..8)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    Some((len, head + len))
}
