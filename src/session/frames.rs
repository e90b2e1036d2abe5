//! Server → client frame writing: one frame header per chunk, many chunks per
//! vectored write, payloads never copied.

use std::io::{self, IoSlice};

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Largest unmasked frame header.
const MAX_HEAD: usize = 10;

/// Reusable buffers for batched writes, and how far the last batch got.
#[derive(Debug, Default)]
pub struct FrameWriter {
    heads: Vec<([u8; MAX_HEAD], usize)>,
    /// Bytes of the current batch written; kept when its write is cancelled, so
    /// that [`FrameWriter::finish_frame`] can complete the frame it was in.
    written: usize,
}

impl FrameWriter {
    /// Writes every chunk as one binary message, in one or few `writev` calls.
    ///
    /// Cancel-safe in the sense that matters: dropped between two `writev`
    /// calls, it has recorded how much went out.
    pub async fn write_binary<W>(&mut self, w: &mut W, chunks: &[Bytes]) -> io::Result<()>
    where
        W: AsyncWrite + Unpin,
    {
        self.written = 0;
        if let [chunk] = chunks {
            let (head, len) = head(OpCode::Binary, chunk);
            let mut slices = [IoSlice::new(&head[..len]), IoSlice::new(chunk)];
            write_counted(w, &mut slices, &mut self.written).await?;
            return w.flush().await;
        }
        let Self { heads, written } = self;
        heads.clear();
        for chunk in chunks {
            heads.push(head(OpCode::Binary, chunk));
        }
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(chunks.len() * 2);
        for ((head, len), chunk) in heads.iter().zip(chunks) {
            slices.push(IoSlice::new(&head[..*len]));
            slices.push(IoSlice::new(chunk));
        }
        write_counted(w, &mut slices, written).await?;
        w.flush().await
    }

    /// After a cancelled [`FrameWriter::write_binary`] of `chunks`: writes the rest of
    /// the frame it had started, if any, so that the stream ends on a frame boundary.
    pub async fn finish_frame<W>(&mut self, w: &mut W, chunks: &[Bytes]) -> io::Result<()>
    where
        W: AsyncWrite + Unpin,
    {
        let mut start = 0;
        for chunk in chunks {
            let (head, len) = head(OpCode::Binary, chunk);
            let end = start + len + chunk.len();
            if self.written < end {
                if self.written > start {
                    let mut slices = [IoSlice::new(&head[..len]), IoSlice::new(chunk)];
                    let mut rest = &mut slices[..];
                    IoSlice::advance_slices(&mut rest, self.written - start);
                    write_counted(w, rest, &mut self.written).await?;
                }
                break;
            }
            start = end;
        }
        w.flush().await
    }
}

/// Writes one frame of `opcode` with `payload` (for text and control frames).
pub async fn write_frame<W>(w: &mut W, opcode: OpCode, payload: &[u8]) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let (head, len) = head(opcode, payload);
    let mut slices = [IoSlice::new(&head[..len]), IoSlice::new(payload)];
    write_all_vectored(w, &mut slices).await?;
    w.flush().await
}

/// A close frame's payload: the code, then the reason.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

fn head(opcode: OpCode, payload: &[u8]) -> ([u8; MAX_HEAD], usize) {
    let mut head = [0u8; MAX_HEAD];
    let len = Frame::new(true, opcode, None, Payload::Borrowed(payload)).fmt_head(&mut head);
    (head, len)
}

/// Writes every slice, in as few `writev` calls as the socket allows.
pub async fn write_all_vectored<W>(w: &mut W, slices: &mut [IoSlice<'_>]) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let mut written = 0;
    write_counted(w, slices, &mut written).await
}

/// As [`write_all_vectored`], adding to `written` after every `writev`.
async fn write_counted<W>(
    w: &mut W,
    mut slices: &mut [IoSlice<'_>],
    written: &mut usize,
) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        let n = w.write_vectored(slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        *written += n;
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn frames_are_rfc6455_unmasked() {
        let mut out = Vec::new();
        let chunks = [
            Bytes::from(vec![1u8; 5]),
            Bytes::from(vec![2u8; 300]),
            Bytes::from(vec![3u8; 70_000]),
        ];
        FrameWriter::default()
            .write_binary(&mut out, &chunks)
            .await
            .unwrap();
        assert_eq!(&out[..2], &[0x82, 5]);
        assert_eq!(&out[7..11], &[0x82, 126, 1, 44]);
        let big = 7 + 4 + 300;
        assert_eq!(&out[big..big + 2], &[0x82, 127]);
        assert_eq!(&out[big + 2..big + 10], &70_000u64.to_be_bytes());
        assert_eq!(out.len(), big + 10 + 70_000);

        let mut text = Vec::new();
        write_frame(&mut text, OpCode::Text, b"h").await.unwrap();
        assert_eq!(text, [0x81, 1, b'h']);
        assert_eq!(close_payload(1000, "bye"), [3, 232, b'b', b'y', b'e']);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_batch_is_finished_at_the_end_of_its_frame() {
        use tokio::io::AsyncReadExt;
        let chunks = [
            Bytes::from(vec![1u8; 300]),
            Bytes::from(vec![2u8; 2000]),
            Bytes::from(vec![3u8; 300]),
        ];
        // A pipe that takes 1000 bytes, then blocks: the write stops inside the second frame.
        let (mut w, mut peer) = tokio::io::duplex(1000);
        let mut frames = FrameWriter::default();
        let write = frames.write_binary(&mut w, &chunks);
        assert!(tokio::time::timeout(Duration::from_millis(10), write)
            .await
            .is_err());
        let reader = tokio::spawn(async move {
            let mut out = Vec::new();
            peer.read_to_end(&mut out).await.map(|_| out)
        });
        frames.finish_frame(&mut w, &chunks).await.unwrap();
        drop(w);
        let out = reader.await.unwrap().unwrap();
        assert_eq!(
            out.len(),
            4 + 300 + 4 + 2000,
            "both frames whole, the third not begun"
        );
        assert_eq!(&out[304..308], &[0x82, 126, 7, 208]);
        assert!(out[308..].iter().all(|b| *b == 2));
    }
}
