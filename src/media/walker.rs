//! Format-independent, incremental walker over nested length-prefixed elements
//! (EBML elements or ISO-BMFF boxes). It owns the byte position, a small fixed
//! header/value buffer and a bounded stack of open container elements; the
//! format-specific [`Grammar`] decides what each element means.

use super::ScanEvent;

/// Largest number of bytes ever buffered (element header or leading value bytes).
pub(super) const MAX_BUF: usize = 32;
/// Deepest nesting of open container elements that is accepted.
pub(super) const MAX_DEPTH: usize = 8;

/// Internal error reason; turned into [`ScanEvent::Error`] by the scanner.
pub(super) type Reason = &'static str;

/// A fully parsed element header.
#[derive(Debug, Clone, Copy)]
pub(super) struct Header {
    /// Element ID (EBML, marker bits kept) or box type (big-endian fourcc).
    pub id: u32,
    /// Absolute offset of the first header byte.
    pub start: u64,
    /// Header length in bytes (ID + size field).
    pub len: u8,
    /// Payload size; `None` = unknown / to end of stream.
    pub size: Option<u64>,
    /// Width in bytes of the size field (the last bytes of the header).
    pub size_width: u8,
}

/// What the walker should do with the payload of an element.
pub(super) enum Action<M, L> {
    /// Skip the payload by counting bytes (unknown size: skip to end of stream).
    Skip,
    /// Descend: the payload is a sequence of child elements.
    Enter(M),
    /// Buffer the first `min(cap, size)` payload bytes, hand them to
    /// [`Grammar::on_value`], then skip the rest. `cap` must be `<= MAX_BUF`.
    Read(L, usize),
}

/// An open container element.
#[derive(Debug, Clone, Copy)]
pub(super) struct Frame<M> {
    pub master: M,
    /// Absolute end offset; `None` for unknown-size elements.
    pub end: Option<u64>,
}

/// Format-specific rules plugged into the [`Walker`].
pub(super) trait Grammar {
    type Master: Copy;
    type Leaf: Copy;
    /// Total header length implied by the bytes read so far; a value larger
    /// than `buf.len()` means "read more" (it may grow as more bytes arrive).
    fn header_need(buf: &[u8]) -> Result<usize, Reason>;
    /// Parses a complete header: `(id, payload size, size field width)`.
    fn parse_header(buf: &[u8]) -> Result<(u32, Option<u64>, u8), Reason>;
    /// Whether element `id` terminates the open unknown-size element `master`.
    fn ends_unknown(&self, master: Self::Master, id: u32) -> bool;
    /// Classifies a new element whose parent is `parent` (`None` = top level).
    fn on_header(
        &mut self,
        parent: Option<Self::Master>,
        h: &Header,
        out: &mut Vec<ScanEvent>,
    ) -> Result<Action<Self::Master, Self::Leaf>, Reason>;
    /// Receives the leading bytes of a `Read` element.
    fn on_value(
        &mut self,
        leaf: Self::Leaf,
        data: &[u8],
        out: &mut Vec<ScanEvent>,
    ) -> Result<(), Reason>;
    /// Called when a container element ends (innermost first).
    fn on_close(&mut self, frame: &Frame<Self::Master>, out: &mut Vec<ScanEvent>);
}

enum State<L> {
    Header,
    Skip(u64),
    SkipToEnd,
    Read { leaf: L, want: usize, rest: u64 },
}

/// Incremental walker; see the module docs.
pub(super) struct Walker<G: Grammar> {
    pub grammar: G,
    pos: u64,
    state: State<G::Leaf>,
    buf: [u8; MAX_BUF],
    buf_len: usize,
    stack: Vec<Frame<G::Master>>,
}

impl<G: Grammar> Walker<G> {
    /// Creates a walker positioned at stream offset 0.
    pub(super) fn new(grammar: G) -> Self {
        Walker {
            grammar,
            pos: 0,
            state: State::Header,
            buf: [0; MAX_BUF],
            buf_len: 0,
            stack: Vec::with_capacity(MAX_DEPTH),
        }
    }

    /// Bytes currently buffered (always `<= MAX_BUF`).
    pub(super) fn buffered(&self) -> usize {
        self.buf_len
    }

    /// Number of open container elements (always `<= MAX_DEPTH`).
    pub(super) fn depth(&self) -> usize {
        self.stack.len()
    }

    /// Consumes `input`; on error the walker must not be fed again.
    pub(super) fn feed(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<ScanEvent>,
    ) -> Result<(), Reason> {
        loop {
            self.close_finished(out);
            if input.is_empty() {
                return Ok(());
            }
            let used = self.step(input, out)?;
            input = input.get(used..).unwrap_or_default();
        }
    }

    /// Current absolute stream position.
    pub(super) fn pos(&self) -> u64 {
        self.pos
    }

    fn step(&mut self, input: &[u8], out: &mut Vec<ScanEvent>) -> Result<usize, Reason> {
        match self.state {
            State::Header => self.read_header(input, out),
            State::Skip(n) => {
                let take = n.min(input.len() as u64);
                self.pos += take;
                self.state = if take == n {
                    State::Header
                } else {
                    State::Skip(n - take)
                };
                Ok(take as usize)
            }
            State::SkipToEnd => {
                self.pos += input.len() as u64;
                Ok(input.len())
            }
            State::Read { leaf, want, rest } => {
                let take = (want - self.buf_len).min(input.len());
                self.push(&input[..take])?;
                self.pos += take as u64;
                if self.buf_len == want {
                    self.finish_read(leaf, rest, out)?;
                }
                Ok(take)
            }
        }
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), Reason> {
        let end = self.buf_len + bytes.len();
        let dst = self
            .buf
            .get_mut(self.buf_len..end)
            .ok_or("internal buffer overflow")?;
        dst.copy_from_slice(bytes);
        self.buf_len = end;
        Ok(())
    }

    fn read_header(&mut self, input: &[u8], out: &mut Vec<ScanEvent>) -> Result<usize, Reason> {
        for (used, &b) in input.iter().enumerate() {
            self.push(&[b])?;
            self.pos += 1;
            if G::header_need(&self.buf[..self.buf_len])? == self.buf_len {
                self.header_complete(out)?;
                return Ok(used + 1);
            }
        }
        Ok(input.len())
    }

    fn header_complete(&mut self, out: &mut Vec<ScanEvent>) -> Result<(), Reason> {
        let (id, size, size_width) = G::parse_header(&self.buf[..self.buf_len])?;
        let len = self.buf_len as u8;
        self.buf_len = 0;
        let start = self.pos - u64::from(len);
        let h = Header {
            id,
            start,
            len,
            size,
            size_width,
        };
        self.close_unknown(id, out);
        let end = self.checked_end(size)?;
        let parent = self.stack.last().map(|f| f.master);
        let action = self.grammar.on_header(parent, &h, out)?;
        self.apply(action, size, end, out)
    }

    /// Absolute end of an element whose payload starts here; checks that it
    /// fits in the innermost known-size ancestor.
    fn checked_end(&self, size: Option<u64>) -> Result<Option<u64>, Reason> {
        let end = match size {
            Some(s) => Some(
                self.pos
                    .checked_add(s)
                    .ok_or("element size overflows u64")?,
            ),
            None => None,
        };
        if let Some(limit) = self.stack.iter().rev().find_map(|f| f.end) {
            if self.pos > limit || end.is_some_and(|e| e > limit) {
                return Err("element overflows its parent");
            }
        }
        Ok(end)
    }

    fn apply(
        &mut self,
        action: Action<G::Master, G::Leaf>,
        size: Option<u64>,
        end: Option<u64>,
        out: &mut Vec<ScanEvent>,
    ) -> Result<(), Reason> {
        match action {
            Action::Skip => self.state = size.map_or(State::SkipToEnd, State::Skip),
            Action::Enter(master) => {
                if self.stack.len() >= MAX_DEPTH {
                    return Err("nesting too deep");
                }
                self.stack.push(Frame { master, end });
            }
            Action::Read(leaf, cap) => {
                let size = size.ok_or("unknown size on a value element")?;
                let want = (cap.min(MAX_BUF) as u64).min(size) as usize;
                let rest = size - want as u64;
                self.state = State::Read { leaf, want, rest };
                if want == 0 {
                    self.finish_read(leaf, rest, out)?;
                }
            }
        }
        Ok(())
    }

    fn finish_read(
        &mut self,
        leaf: G::Leaf,
        rest: u64,
        out: &mut Vec<ScanEvent>,
    ) -> Result<(), Reason> {
        let res = self.grammar.on_value(leaf, &self.buf[..self.buf_len], out);
        self.buf_len = 0;
        self.state = if rest == 0 {
            State::Header
        } else {
            State::Skip(rest)
        };
        res
    }

    /// Pops unknown-size elements that the element `id` implicitly terminates.
    fn close_unknown(&mut self, id: u32, out: &mut Vec<ScanEvent>) {
        while let Some(top) = self.stack.last().copied() {
            if top.end.is_some() || !self.grammar.ends_unknown(top.master, id) {
                break;
            }
            self.stack.pop();
            self.grammar.on_close(&top, out);
        }
    }

    /// Pops every element ending at the current position (and all unknown-size
    /// elements nested in them), innermost first.
    fn close_finished(&mut self, out: &mut Vec<ScanEvent>) {
        let Some(idx) = self.stack.iter().position(|f| f.end == Some(self.pos)) else {
            return;
        };
        while self.stack.len() > idx {
            if let Some(top) = self.stack.pop() {
                self.grammar.on_close(&top, out);
            }
        }
    }
}
