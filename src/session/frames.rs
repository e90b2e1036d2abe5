//! Server → client frame writing: one frame header per chunk, many chunks per
//! vectored write, payloads never copied.

use std::io::{self, IoSlice};

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Largest unmasked frame header.
const MAX_HEAD: usize = 10;

/// Reusable buffers for batched writes.
#[derive(Debug, Default)]
pub struct FrameWriter {
    heads: Vec<([u8; MAX_HEAD], usize)>,
}

impl FrameWriter {
    /// Writes every chunk as one binary message, in one or few `writev` calls.
    pub async fn write_binary<W>(&mut self, w: &mut W, chunks: &[Bytes]) -> io::Result<()>
    where
        W: AsyncWrite + Unpin,
    {
        if let [chunk] = chunks {
            let (head, len) = head(OpCode::Binary, chunk);
            let mut slices = [IoSlice::new(&head[..len]), IoSlice::new(chunk)];
            write_all_vectored(w, &mut slices).await?;
            return w.flush().await;
        }
        self.heads.clear();
        for chunk in chunks {
            self.heads.push(head(OpCode::Binary, chunk));
        }
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(chunks.len() * 2);
        for ((head, len), chunk) in self.heads.iter().zip(chunks) {
            slices.push(IoSlice::new(&head[..*len]));
            slices.push(IoSlice::new(chunk));
        }
        write_all_vectored(w, &mut slices).await?;
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
pub async fn write_all_vectored<W>(w: &mut W, mut slices: &mut [IoSlice<'_>]) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        let n = w.write_vectored(slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
