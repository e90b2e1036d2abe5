//! Pure, incremental container scanner for live media streams.
//!
//! A publisher's stream arrives as chunks cut at arbitrary byte offsets. The
//! [`Scanner`] is fed those chunks in order and reports, with absolute stream
//! offsets, where the init segment ends and where a late joiner may start
//! (join points). It never copies chunk payloads: it keeps at most
//! [`MAX_BUFFERED`] bytes of partially read headers plus a few counters, so
//! memory is bounded whatever the input.
//!
//! Supported: WebM/Matroska (EBML magic) and fragmented MP4 (`ftyp` first);
//! anything else is [`Container::Opaque`] and produces no events.

mod mp4;
mod walker;
mod webm;

use walker::Walker;

/// Largest number of stream bytes the scanner ever buffers at once.
pub const MAX_BUFFERED: usize = walker::MAX_BUF;

/// Container format detected from the first bytes of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// Not enough bytes seen yet to decide.
    Unknown,
    /// EBML magic `1A 45 DF A3`.
    WebM,
    /// First box has type `ftyp` (fragmented MP4 expected).
    Mp4,
    /// Anything else; never produces events.
    Opaque,
}

/// Location of the WebM Segment's size field inside the init segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeField {
    /// Absolute offset of the first byte of the size vint (inside the init).
    pub offset: u64,
    /// Width of the size vint in bytes (1..=8).
    pub width: u8,
}

impl SizeField {
    /// Overwrites the size field in `init` (stream bytes `[0, len)`) with the
    /// EBML "unknown size" pattern of the same width; returns false if out of range.
    pub fn make_unknown(&self, init: &mut [u8]) -> bool {
        let start = self.offset as usize;
        let Some(field) = init.get_mut(start..start + usize::from(self.width)) else {
            return false;
        };
        field.fill(0xFF);
        if let Some(first) = field.first_mut() {
            *first = 0xFF >> (self.width - 1);
        }
        true
    }
}

/// Something the scanner found; offsets are absolute stream byte offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEvent {
    /// The init segment is stream bytes `[0, len)`. Emitted at most once, before
    /// any `JoinPoint`. `segment_size` is `Some` when the WebM Segment has a
    /// known size, which is wrong for a late joiner (see [`SizeField::make_unknown`]).
    InitComplete {
        len: u64,
        segment_size: Option<SizeField>,
    },
    /// A receiver sent the init segment may start decoding at `offset`, the
    /// first byte of a WebM Cluster or an MP4 `moof` box.
    JoinPoint { offset: u64 },
    /// Unsupported or inconsistent data; the scanner stops (no further events).
    Error(String),
}

enum Inner {
    Detecting,
    WebM(Box<Walker<webm::Webm>>),
    Mp4(Box<Walker<mp4::Mp4>>),
    /// Opaque input, or scanning stopped after an error.
    Idle,
}

/// Incremental scanner; feed it the stream's chunks in order.
pub struct Scanner {
    seen: u64,
    container: Container,
    detect: [u8; 8],
    detect_len: usize,
    inner: Inner,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

impl Scanner {
    /// Creates a scanner for a new stream (offset 0).
    pub fn new() -> Self {
        Scanner {
            seen: 0,
            container: Container::Unknown,
            detect: [0; 8],
            detect_len: 0,
            inner: Inner::Detecting,
        }
    }

    /// Feeds the next chunk; appends events (absolute stream offsets) to `out`.
    /// Never panics; after an `Error` event all further input is ignored.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<ScanEvent>) {
        self.seen += chunk.len() as u64;
        let mut rest = chunk;
        if let Inner::Detecting = self.inner {
            let take = (self.detect.len() - self.detect_len).min(chunk.len());
            self.detect[self.detect_len..self.detect_len + take].copy_from_slice(&chunk[..take]);
            self.detect_len += take;
            rest = &chunk[take..];
            if !self.detect_format() {
                return;
            }
            let head = self.detect;
            self.feed_inner(&head[..self.detect_len], out);
        }
        self.feed_inner(rest, out);
    }

    /// The detected container (`Unknown` until enough bytes were seen).
    pub fn container(&self) -> Container {
        self.container
    }

    /// Total number of bytes fed so far.
    pub fn bytes_seen(&self) -> u64 {
        self.seen
    }

    /// Whether scanning stopped because of an error.
    pub fn failed(&self) -> bool {
        matches!(self.inner, Inner::Idle) && self.container != Container::Opaque
    }

    /// Bytes of stream data currently buffered (always `<= MAX_BUFFERED`);
    /// exposed so tests can check that memory stays bounded.
    pub fn buffered_bytes(&self) -> usize {
        match &self.inner {
            Inner::Detecting => self.detect_len,
            Inner::WebM(w) => w.buffered(),
            Inner::Mp4(w) => w.buffered(),
            Inner::Idle => 0,
        }
    }

    /// Current element nesting depth (always `<= 8`); for tests.
    pub fn nesting_depth(&self) -> usize {
        match &self.inner {
            Inner::WebM(w) => w.depth(),
            Inner::Mp4(w) => w.depth(),
            _ => 0,
        }
    }

    /// Decides the container from `detect`; returns true once decided.
    fn detect_format(&mut self) -> bool {
        let head = &self.detect[..self.detect_len];
        let (container, inner) = if head.starts_with(&webm::EBML_MAGIC) {
            (
                Container::WebM,
                Inner::WebM(Box::new(Walker::new(webm::Webm::default()))),
            )
        } else if head.len() < 8 {
            return false;
        } else if &head[4..8] == b"ftyp" {
            (
                Container::Mp4,
                Inner::Mp4(Box::new(Walker::new(mp4::Mp4::default()))),
            )
        } else {
            (Container::Opaque, Inner::Idle)
        };
        self.container = container;
        self.inner = inner;
        true
    }

    fn feed_inner(&mut self, data: &[u8], out: &mut Vec<ScanEvent>) {
        let (result, pos) = match &mut self.inner {
            Inner::WebM(w) => (w.feed(data, out), w.pos()),
            Inner::Mp4(w) => (w.feed(data, out), w.pos()),
            Inner::Detecting | Inner::Idle => return,
        };
        if let Err(reason) = result {
            out.push(ScanEvent::Error(format!(
                "{:?}: {reason} (near byte {pos})",
                self.container
            )));
            self.inner = Inner::Idle;
        }
    }
}

#[cfg(test)]
mod tests;
