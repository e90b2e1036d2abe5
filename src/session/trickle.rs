//! Frame input for receivers and probes, which send rarely and little (a text
//! `h` every 20 s). Keeping a frame parser with its 8 KiB buffer per idle
//! receiver would dominate the server's memory per connection, so bytes are
//! buffered here in a small allocation that is freed when empty, and handed to
//! the parser one at a time: it never reads past a frame, so a parser can be
//! made for each frame and dropped after it.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use fastwebsockets::{after_handshake_split, Frame, Role, WebSocketError};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// Bytes read from the socket at once.
const READ_SIZE: usize = 512;

#[derive(Debug)]
pub(super) struct Trickle<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
}

impl<R: AsyncRead + Unpin> Trickle<R> {
    pub(super) fn new(inner: R) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            pos: 0,
        }
    }

    /// Waits until at least one byte is buffered; false at end of stream.
    pub(super) async fn ready(&mut self) -> io::Result<bool> {
        if self.pos < self.buf.len() {
            return Ok(true);
        }
        let mut chunk = [0u8; READ_SIZE];
        let n = self.inner.read(&mut chunk).await?;
        self.buf = chunk[..n].to_vec();
        self.pos = 0;
        Ok(n > 0)
    }

    /// Reads exactly one frame (owned payload), with a parser that lives only for it.
    pub(super) async fn frame(&mut self, max_message: usize) -> Result<OwnedFrame, WebSocketError> {
        let (mut parser, _) = after_handshake_split(&mut *self, tokio::io::sink(), Role::Server);
        parser.set_auto_close(false);
        parser.set_auto_pong(false);
        parser.set_max_message_size(max_message);
        let mut ignore = |_| async { Ok::<(), io::Error>(()) };
        let frame = parser.read_frame(&mut ignore).await?;
        Ok(OwnedFrame::from(frame))
    }

    /// The underlying reader, with the bytes still buffered here in front of it.
    pub(super) fn into_reader(self) -> Box<dyn AsyncRead + Send + Unpin>
    where
        R: Send + 'static,
    {
        let rest = io::Cursor::new(self.buf[self.pos..].to_vec());
        Box::new(rest.chain(self.inner))
    }

    /// Bytes currently held (for tests).
    #[cfg(test)]
    pub(super) fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }
}

/// A frame detached from its parser.
#[derive(Debug)]
pub(super) struct OwnedFrame {
    pub fin: bool,
    pub opcode: fastwebsockets::OpCode,
    /// Whether the client masked it (RFC 6455 §5.1: it must).
    pub masked: bool,
    pub payload: bytes::BytesMut,
}

impl From<Frame<'_>> for OwnedFrame {
    fn from(mut frame: Frame<'_>) -> Self {
        // The parser keeps the mask private; the header it would write shows the mask bit.
        let mut head = [0u8; 14];
        frame.fmt_head(&mut head);
        let masked = head[1] & 0x80 != 0;
        let payload = match frame.payload {
            fastwebsockets::Payload::Bytes(b) => b,
            other => bytes::BytesMut::from(&other[..]),
        };
        Self {
            fin: frame.fin,
            opcode: frame.opcode,
            masked,
            payload,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Trickle<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos == this.buf.len() {
            this.buf = Vec::new();
            this.pos = 0;
            let mut chunk = [0u8; READ_SIZE];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            this.buf = read.filled().to_vec();
        }
        if out.remaining() > 0 {
            if let Some(byte) = this.buf.get(this.pos) {
                out.put_slice(&[*byte]);
                this.pos += 1;
            }
        }
        if this.pos == this.buf.len() {
            this.buf = Vec::new();
            this.pos = 0;
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut f = vec![0x80 | opcode];
        if payload.len() < 126 {
            f.push(0x80 | payload.len() as u8);
        } else {
            f.push(0x80 | 126);
            f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    #[tokio::test]
    async fn frames_back_to_back_are_read_one_by_one_without_loss() {
        let mut wire = client_frame(1, b"h");
        wire.extend(client_frame(2, &[7u8; 1000]));
        wire.extend(client_frame(9, b"ping"));
        let mut t = Trickle::new(&wire[..]);
        assert!(t.ready().await.unwrap());
        let f = t.frame(1 << 16).await.unwrap();
        assert_eq!(
            (f.opcode, &f.payload[..]),
            (fastwebsockets::OpCode::Text, &b"h"[..])
        );
        let f = t.frame(1 << 16).await.unwrap();
        assert_eq!(
            (f.opcode, f.payload.len()),
            (fastwebsockets::OpCode::Binary, 1000)
        );
        assert!(f.payload.iter().all(|b| *b == 7));
        let f = t.frame(1 << 16).await.unwrap();
        assert_eq!(
            (f.opcode, &f.payload[..]),
            (fastwebsockets::OpCode::Ping, &b"ping"[..])
        );
        assert_eq!(t.buffered(), 0);
        assert!(!t.ready().await.unwrap(), "end of stream");
    }

    #[tokio::test]
    async fn the_reader_handed_on_keeps_the_bytes_buffered_here() {
        let mut wire = client_frame(2, &[1u8; 2000]);
        wire.extend(client_frame(1, b"next"));
        let mut t = Trickle::new(std::io::Cursor::new(wire));
        assert!(t.ready().await.unwrap());
        assert_eq!(t.frame(1 << 16).await.unwrap().payload.len(), 2000);
        let mut rest = Vec::new();
        t.into_reader().read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, client_frame(1, b"next"));
    }

    #[tokio::test]
    async fn oversized_frames_are_refused() {
        let wire = client_frame(2, &[0u8; 300]);
        let mut t = Trickle::new(&wire[..]);
        assert!(matches!(
            t.frame(100).await,
            Err(WebSocketError::FrameTooLarge)
        ));
    }
}
