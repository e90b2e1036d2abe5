//! Receivers: healthy ones verify and time every chunk; stuck ones never read,
//! and at the end are drained to see whether the server closed them.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::chunk::{self, SeqChecker};
use crate::client::{self, Event, Reader};
use crate::stats::Histogram;
use crate::traffic::Shared;

/// How long a stuck receiver's leftovers are read at the end.
const STUCK_DRAIN: Duration = Duration::from_secs(3);

/// What one healthy receiver saw.
#[derive(Debug, Default)]
pub(crate) struct RecvReport {
    pub index: usize,
    pub checker: SeqChecker,
    pub latency: Histogram,
    pub bytes: u64,
    pub corrupt: u64,
    pub last_at: Option<Instant>,
    pub failure: Option<String>,
}

/// How a receiver that stopped reading ended, seen once it reads again while
/// its publisher is still connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StuckEnd {
    /// A close frame with this code (after `chunks` chunks).
    Closed { code: Option<u16>, chunks: u64 },
    /// EOF or reset without a close frame.
    Dropped { chunks: u64 },
    /// Still open: the server kept it.
    Open { chunks: u64 },
}

fn max_message(chunk: usize) -> usize {
    (64 << 20).max(chunk + 1)
}

/// Reads until the run is stopped, checking every chunk.
pub(crate) async fn healthy(stream: TcpStream, shared: Arc<Shared>, index: usize) -> RecvReport {
    let (mut reader, write) = Reader::new(stream, max_message(shared.plan.chunk));
    tokio::spawn(client::heartbeat(write, shared.masked, shared.stop.clone()));
    let mut r = RecvReport {
        index,
        ..RecvReport::default()
    };
    let mut seen = 0u64;
    let (chunk_len, every) = (shared.plan.chunk, shared.plan.verify_every.max(1));
    let ended = tokio::select! {
        biased;
        _ = shared.stop.cancelled() => None,
        res = reader.run(|ev| {
            match ev {
                Event::Binary(data) => {
                    seen += 1;
                    on_chunk(&mut r, &shared, data, chunk_len, seen % every == 0);
                }
                Event::Close => {}
            }
            true
        }) => Some(res),
    };
    match ended {
        None => {}
        Some(Ok(code)) => r.failure = Some(format!("closed early, code {code:?}")),
        Some(Err(e)) => r.failure = Some(format!("read failed: {e}")),
    }
    if r.failure.is_some() {
        shared.progress[index].store(u64::MAX, Ordering::Release);
    }
    r
}

fn on_chunk(r: &mut RecvReport, shared: &Shared, data: &[u8], len: usize, full: bool) {
    match chunk::verify(data, len, full) {
        Ok(stamp) => {
            let now = shared.now_ns();
            r.checker.observe(stamp.seq);
            r.latency.record(now.saturating_sub(stamp.sent_ns) / 1000);
            r.bytes += data.len() as u64;
            r.last_at = Some(Instant::now());
            shared.progress[r.index].store(r.checker.next(), Ordering::Release);
            if shared.waiting.load(Ordering::Acquire) {
                shared.wake.notify_waiters();
            }
        }
        Err(_) => r.corrupt += 1,
    }
}

/// Reads what each stuck receiver has left, in parallel, for a bounded time.
pub(crate) async fn drain_stuck(
    streams: Vec<TcpStream>,
    chunk: usize,
    play: bool,
) -> Vec<StuckEnd> {
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|s| {
            if play {
                tokio::spawn(drain_play(s, chunk))
            } else {
                tokio::spawn(drain_one(s, chunk))
            }
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap_or(StuckEnd::Dropped { chunks: 0 }));
    }
    out
}

async fn drain_one(stream: TcpStream, chunk: usize) -> StuckEnd {
    let (mut reader, _write) = Reader::new(stream, max_message(chunk));
    let mut chunks = 0u64;
    let read = reader.run(|ev| {
        if let Event::Binary(_) = ev {
            chunks += 1;
        }
        true
    });
    match tokio::time::timeout(STUCK_DRAIN, read).await {
        Err(_) => StuckEnd::Open { chunks },
        Ok(Ok(code)) => StuckEnd::Closed { code, chunks },
        Ok(Err(_)) => StuckEnd::Dropped { chunks },
    }
}

// === HTTP playback (`--receive-kind play`) ===

/// Largest response head accepted.
const MAX_HEAD: usize = 8192;

/// A chunked HTTP body, decoded as it arrives.
#[derive(Debug, Default)]
struct Chunked {
    /// Bytes left in the current body chunk; `None` between chunks.
    left: Option<usize>,
    /// The CRLF after a chunk's data is still to come.
    crlf: bool,
}

/// What one step of the decoder found.
enum Step<'a> {
    Data(&'a [u8]),
    More,
    End,
    Bad(&'static str),
}

impl Chunked {
    /// Decodes from the front of `buf`; returns the step and the bytes it used.
    fn step<'a>(&mut self, buf: &'a [u8]) -> (Step<'a>, usize) {
        if self.crlf {
            if buf.len() < 2 {
                return (Step::More, 0);
            }
            if &buf[..2] != b"\r\n" {
                return (Step::Bad("no CRLF after a chunk"), 0);
            }
            self.crlf = false;
            return self.step(&buf[2..]).map_used(2);
        }
        match self.left {
            Some(left) => {
                let n = left.min(buf.len());
                if n == 0 {
                    return (Step::More, 0);
                }
                let rest = left - n;
                self.left = (rest > 0).then_some(rest);
                self.crlf = rest == 0;
                (Step::Data(&buf[..n]), n)
            }
            None => {
                let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
                    return if buf.len() > 64 {
                        (Step::Bad("chunk-size line too long"), 0)
                    } else {
                        (Step::More, 0)
                    };
                };
                let line = std::str::from_utf8(&buf[..end]).unwrap_or("");
                let hex = line.split(';').next().unwrap_or("").trim();
                match usize::from_str_radix(hex, 16) {
                    Ok(0) => (Step::End, end + 2),
                    Ok(size) => {
                        self.left = Some(size);
                        self.step(&buf[end + 2..]).map_used(end + 2)
                    }
                    Err(_) => (Step::Bad("bad chunk size"), 0),
                }
            }
        }
    }
}

trait MapUsed {
    fn map_used(self, more: usize) -> Self;
}

impl MapUsed for (Step<'_>, usize) {
    fn map_used(self, more: usize) -> Self {
        (self.0, self.1 + more)
    }
}

/// Reads the answer's head; `Err` unless it is a `200`.
async fn play_head(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<(), String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let _ = buf.split_to(end + 4);
            if !head.starts_with("HTTP/1.1 200") {
                return Err(format!("play refused: {:?}", head.lines().next()));
            }
            if !head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked")
            {
                return Err("play answer is not chunked".into());
            }
            return Ok(());
        }
        if buf.len() > MAX_HEAD {
            return Err("play answer head too large".into());
        }
        match stream.read_buf(buf).await {
            Ok(0) => return Err("closed before the answer".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("read failed: {e}")),
        }
    }
}

/// As [`healthy`], over HTTP: the body is the chunks back to back, cut at the
/// plan's chunk length whatever the HTTP chunking.
pub(crate) async fn healthy_play(
    mut stream: TcpStream,
    shared: Arc<Shared>,
    index: usize,
) -> RecvReport {
    let mut r = RecvReport {
        index,
        ..RecvReport::default()
    };
    let stop = shared.stop.clone();
    let ended = tokio::select! {
        biased;
        _ = stop.cancelled() => None,
        res = read_play(&mut stream, &mut r, &shared) => Some(res),
    };
    match ended {
        None => {}
        Some(Ok(())) => r.failure = Some("body ended early".into()),
        Some(Err(e)) => r.failure = Some(e),
    }
    if r.failure.is_some() {
        shared.progress[index].store(u64::MAX, Ordering::Release);
    }
    r
}

async fn read_play(
    stream: &mut TcpStream,
    r: &mut RecvReport,
    shared: &Shared,
) -> Result<(), String> {
    let mut buf = BytesMut::with_capacity(256 * 1024);
    play_head(stream, &mut buf).await?;
    let (chunk_len, every) = (shared.plan.chunk, shared.plan.verify_every.max(1));
    let mut decoder = Chunked::default();
    let mut message: Vec<u8> = Vec::with_capacity(chunk_len);
    let mut seen = 0u64;
    loop {
        loop {
            let (step, used) = decoder.step(&buf);
            match step {
                Step::Data(mut data) => {
                    while !data.is_empty() {
                        if message.is_empty() && data.len() >= chunk_len {
                            seen += 1;
                            on_chunk(r, shared, &data[..chunk_len], chunk_len, seen % every == 0);
                            data = &data[chunk_len..];
                            continue;
                        }
                        let take = (chunk_len - message.len()).min(data.len());
                        message.extend_from_slice(&data[..take]);
                        data = &data[take..];
                        if message.len() == chunk_len {
                            seen += 1;
                            on_chunk(r, shared, &message, chunk_len, seen % every == 0);
                            message.clear();
                        }
                    }
                    let _ = buf.split_to(used);
                }
                Step::More => {
                    let _ = buf.split_to(used);
                    break;
                }
                Step::End => return Ok(()),
                Step::Bad(why) => return Err(why.into()),
            }
        }
        if buf.capacity() - buf.len() < 64 * 1024 {
            buf.reserve(256 * 1024);
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) => return Err("connection ended without the last chunk".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("read failed: {e}")),
        }
    }
}

/// A stuck play reader: how its connection ended once read (chunks not counted).
async fn drain_play(mut stream: TcpStream, _chunk: usize) -> StuckEnd {
    let mut buf = vec![0u8; 256 * 1024];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    match tokio::time::timeout(STUCK_DRAIN, read).await {
        Err(_) => StuckEnd::Open { chunks: 0 },
        Ok(()) => StuckEnd::Dropped { chunks: 0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8], pieces: usize) -> (Vec<u8>, bool) {
        let mut d = Chunked::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for part in input.chunks(pieces) {
            buf.extend_from_slice(part);
            loop {
                let (step, used) = d.step(&buf);
                match step {
                    Step::Data(data) => {
                        out.extend_from_slice(data);
                        let _ = buf.split_to(used);
                    }
                    Step::More => {
                        let _ = buf.split_to(used);
                        break;
                    }
                    Step::End => return (out, true),
                    Step::Bad(why) => panic!("{why}"),
                }
            }
        }
        (out, false)
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_reads() {
        let body = b"5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n";
        for pieces in [1, 2, 3, 7, body.len()] {
            assert_eq!(decode(body, pieces), (b"hello world!".to_vec(), true));
        }
        assert_eq!(decode(b"3\r\nab", 4), (b"ab".to_vec(), false));
    }
}
