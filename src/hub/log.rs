//! The chunk log of one publishing session: a shared, append-only window of
//! chunks with a cursor per receiver.
//!
//! Two regions overlap at its head: the *cache* (what a new receiver is
//! replayed, bounded by `GOP_CACHE_SIZE_MB`) and the *lag window* (what a live
//! receiver may still be behind, bounded by `RECEIVER_QUEUE_MB`). Chunks outside
//! both are dropped; a receiver whose cursor falls outside the lag window lags.
//!
//! When the stream's container is understood (an init segment and join points
//! are known), the cache is evicted a whole group at a time, and a receiver
//! joining after an eviction gets the init segment then media from a join
//! point, and a receiver that falls out of the lag window may skip to the newest
//! one ([`overload`]). Pure data structure: no locks, no clocks, no I/O.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// Bytes of bookkeeping counted per cached chunk, as the original.
pub(crate) const CHUNK_OVERHEAD: u64 = 16;
/// About the most media a probe gets after the init segment, once history was evicted.
pub(crate) const PROBE_MEDIA_BYTES: usize = 1 << 20;
/// Most chunks a log keeps, whatever their size: bounds the bookkeeping of a
/// publisher sending tiny or empty messages (days of a real stream).
pub(crate) const MAX_LOG_CHUNKS: usize = 1 << 20;

#[derive(Debug)]
struct Entry {
    bytes: Bytes,
    /// Stream offset of the chunk's first byte.
    start: u64,
    /// Accounted offset (lengths plus `CHUNK_OVERHEAD` each) of the chunk's start.
    acc: u64,
    /// Offset inside the chunk of its first join point.
    join: Option<usize>,
}

/// What the container scanner learnt from one chunk.
#[derive(Debug, Default, Clone)]
pub(crate) struct MediaUpdate {
    /// The init segment, once complete.
    pub init: Option<Bytes>,
    /// Absolute stream offsets of join points, in order.
    pub joins: Vec<u64>,
    /// The container could not be followed: back to opaque bytes.
    pub failed: bool,
}

/// A receiver fell further behind than the lag window allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lagged {
    pub behind_bytes: u64,
    /// Why it is closed rather than skipped (for the log line).
    pub cause: &'static str,
}

impl Lagged {
    /// The same lag, closed for `cause`.
    pub(crate) fn because(self, cause: &'static str) -> Self {
        Self { cause, ..self }
    }
}

/// Where a new receiver starts.
#[derive(Debug, Default)]
pub(crate) struct Start {
    /// Sent first, in order.
    pub replay: Vec<Bytes>,
    /// First live chunk to send after the replay.
    pub cursor: u64,
    /// No join point is cached: skip live chunks until one, then send this init segment first.
    pub await_join: Option<Bytes>,
}

#[derive(Debug)]
pub(crate) struct ChunkLog {
    entries: VecDeque<Entry>,
    /// Sequence number of `entries[0]`.
    base_seq: u64,
    head_offset: u64,
    /// Accounted bytes appended so far; the lag window is measured in these.
    head_acc: u64,
    cache_start_seq: u64,
    cache_bytes: u64,
    cache_limit: u64,
    receiver_queue_bytes: u64,
    /// Set once the container is understood.
    init: Option<Bytes>,
    /// A `receive-clear-cache` took the history.
    cleared: bool,
    /// Sequence numbers of the retained chunks that hold a join point, oldest first.
    joins: VecDeque<u64>,
}

impl ChunkLog {
    /// `cache_limit` 0 disables the cache; `receiver_queue_bytes` bounds how far a receiver may fall behind.
    pub(crate) fn new(cache_limit: u64, receiver_queue_bytes: u64) -> Self {
        Self {
            entries: VecDeque::new(),
            base_seq: 0,
            head_offset: 0,
            head_acc: 0,
            cache_start_seq: 0,
            cache_bytes: 0,
            cache_limit,
            receiver_queue_bytes,
            init: None,
            cleared: false,
            joins: VecDeque::new(),
        }
    }

    /// Sequence number the next chunk will get.
    pub(crate) fn head_seq(&self) -> u64 {
        self.base_seq + self.entries.len() as u64
    }

    #[cfg(test)]
    pub(crate) fn head_offset(&self) -> u64 {
        self.head_offset
    }

    /// Accounted bytes appended so far (the unit of the lag window).
    pub(crate) fn head_acc(&self) -> u64 {
        self.head_acc
    }

    /// Accounted offset of chunk `seq`'s start: a receiver there has been handed
    /// everything before it (the head's offset for `seq` at or past the head).
    pub(crate) fn acc_of(&self, seq: u64) -> u64 {
        match self.entry(seq) {
            Some(entry) => entry.acc,
            None if seq < self.base_seq => self.entries.front().map_or(self.head_acc, |e| e.acc),
            None => self.head_acc,
        }
    }

    /// Appends a chunk with what the scanner found, then evicts and trims.
    pub(crate) fn push(&mut self, bytes: Bytes, media: MediaUpdate) {
        let len = bytes.len() as u64;
        self.entries.push_back(Entry {
            bytes,
            start: self.head_offset,
            acc: self.head_acc,
            join: None,
        });
        self.head_offset += len;
        self.head_acc += len + CHUNK_OVERHEAD;
        self.cache_bytes += len + CHUNK_OVERHEAD;
        if media.failed {
            self.init = None;
        } else if let Some(init) = media.init {
            self.init = Some(init);
        }
        for offset in media.joins {
            self.mark_join(offset);
        }
        self.settle();
    }

    /// Empties the history after a `receive-clear-cache` replay. Opaque streams stop
    /// caching; understood ones keep the latest group so joiners stay decodable.
    pub(crate) fn clear_history(&mut self) {
        self.cleared = true;
        self.settle();
    }

    /// Where a new receiver starts; a probe gets one message.
    pub(crate) fn start(&self, probe: bool) -> Start {
        let cursor = self.head_seq();
        let Some(init) = self.init.clone().filter(|_| !self.history_intact()) else {
            let replay = if probe {
                self.get(self.cache_start_seq).into_iter().collect()
            } else {
                self.range(self.cache_start_seq, cursor)
            };
            return Start {
                replay,
                cursor,
                await_join: None,
            };
        };
        match self.first_join(self.cache_start_seq) {
            None => Start {
                replay: Vec::new(),
                cursor,
                await_join: Some(init),
            },
            Some((seq, media)) if probe => Start {
                replay: vec![self.probe_message(&init, seq, media)],
                cursor,
                await_join: None,
            },
            Some((seq, media)) => {
                let mut replay = vec![init, media];
                replay.extend(self.range(seq + 1, cursor));
                Start {
                    replay,
                    cursor,
                    await_join: None,
                }
            }
        }
    }

    /// Where a `play` reader starts: at the live edge. Understood streams: the init
    /// segment, then media from the newest cached join point (or, with none cached,
    /// from the next live one); opaque streams: from the first cached chunk, as `receive`.
    pub(crate) fn start_at_edge(&self) -> Start {
        let cursor = self.head_seq();
        let Some(init) = self.init.clone() else {
            return self.start(false);
        };
        match self.last_join_seq() {
            Some(seq) => {
                let mut replay = Vec::new();
                if let Some(entry) = self.entry(seq) {
                    let join = entry.join.unwrap_or(0);
                    replay.push(init);
                    replay.push(entry.bytes.slice(join..));
                }
                replay.extend(self.range(seq + 1, cursor));
                Start {
                    replay,
                    cursor,
                    await_join: None,
                }
            }
            None => Start {
                replay: Vec::new(),
                cursor,
                await_join: Some(init),
            },
        }
    }

    /// The cached chunks, oldest first (shared, not copied).
    #[cfg(test)]
    pub(crate) fn cached(&self) -> Vec<Bytes> {
        self.range(self.cache_start_seq, self.head_seq())
    }

    /// Bytes held by the cache, overhead included.
    pub(crate) fn cache_bytes(&self) -> u64 {
        self.cache_bytes
    }

    /// Bytes of every chunk the log still references.
    #[cfg(test)]
    pub(crate) fn retained_bytes(&self) -> u64 {
        self.entries
            .front()
            .map_or(0, |e| self.head_offset - e.start)
    }

    /// Whether the container is understood (init segment known).
    #[cfg(test)]
    pub(crate) fn understood(&self) -> bool {
        self.init.is_some()
    }

    /// Appends chunks from `cursor` to `out` (at most `max_chunks` and about
    /// `max_bytes`) and returns the new cursor; fails when `cursor` lags.
    pub(crate) fn read(
        &self,
        cursor: u64,
        max_chunks: usize,
        max_bytes: u64,
        out: &mut Vec<Bytes>,
    ) -> Result<u64, Lagged> {
        self.check_lag(cursor)?;
        let mut next = cursor;
        let mut taken = 0u64;
        while next < self.head_seq() && out.len() < max_chunks && taken < max_bytes {
            if let Some(bytes) = self.get(next) {
                taken += bytes.len() as u64;
                out.push(bytes);
            }
            next += 1;
        }
        Ok(next)
    }

    /// Skips to the first join point at or after `cursor`: the media from it and the cursor after its chunk.
    /// The newest chunk stays under the cursor: the scanner may still mark a join point in it.
    pub(crate) fn next_join(&self, cursor: u64) -> (u64, Option<Bytes>) {
        match self.first_join(cursor.max(self.base_seq)) {
            Some((seq, media)) => (seq + 1, Some(media)),
            None => (self.head_seq().saturating_sub(1).max(cursor), None),
        }
    }

    /// How much a receiver at `cursor` has queued beyond the chunk it sends next
    /// (accounted bytes), or `Lagged` once that is over the window. A single chunk
    /// never makes a receiver lag by itself, however large.
    pub(crate) fn check_lag(&self, cursor: u64) -> Result<u64, Lagged> {
        let behind = match self.end_acc(cursor) {
            Some(end) => self.head_acc - end,
            None => self.head_acc - self.entries.front().map_or(0, |e| e.acc) + 1,
        };
        if cursor < self.base_seq || behind > self.receiver_queue_bytes {
            Err(Lagged {
                behind_bytes: behind,
                cause: "over its queue bound",
            })
        } else {
            Ok(behind)
        }
    }

    fn history_intact(&self) -> bool {
        self.cache_start_seq == 0 && !self.cleared
    }

    fn mark_join(&mut self, offset: u64) {
        let idx = self.entries.partition_point(|e| e.start <= offset);
        let Some(entry) = idx.checked_sub(1).and_then(|i| self.entries.get_mut(i)) else {
            return;
        };
        let inside = usize::try_from(offset - entry.start).unwrap_or(usize::MAX);
        if entry.join.is_none() && inside < entry.bytes.len() {
            entry.join = Some(inside);
            let seq = self.base_seq + (idx - 1) as u64;
            if self.joins.back().is_none_or(|last| *last < seq) {
                self.joins.push_back(seq);
            }
        }
    }

    /// Applies the cache rules, then drops what nobody may still need.
    fn settle(&mut self) {
        if self.cleared {
            let keep_from = match self.init {
                Some(_) => self.last_join_seq().unwrap_or(self.head_seq()),
                None => self.head_seq(),
            };
            self.evict_to(keep_from.max(self.cache_start_seq));
        }
        while self.cache_bytes > self.cache_limit && self.cache_start_seq < self.head_seq() {
            let next = match self.init {
                Some(_) => self
                    .first_join(self.cache_start_seq + 1)
                    .map(|(seq, _)| seq),
                None => Some(self.cache_start_seq + 1),
            };
            self.evict_to(next.unwrap_or(self.head_seq()));
        }
        self.trim();
    }

    fn evict_to(&mut self, seq: u64) {
        while self.cache_start_seq < seq {
            let len = self.get(self.cache_start_seq).map_or(0, |b| b.len() as u64);
            self.cache_bytes = self.cache_bytes.saturating_sub(len + CHUNK_OVERHEAD);
            self.cache_start_seq += 1;
        }
    }

    fn first_join(&self, from: u64) -> Option<(u64, Bytes)> {
        (from..self.head_seq()).find_map(|seq| {
            let entry = self.entry(seq)?;
            entry.join.map(|j| (seq, entry.bytes.slice(j..)))
        })
    }

    fn last_join_seq(&self) -> Option<u64> {
        (self.cache_start_seq..self.head_seq())
            .rev()
            .find(|seq| self.entry(*seq).is_some_and(|e| e.join.is_some()))
    }

    /// Init segment plus media from the join point, as one message.
    fn probe_message(&self, init: &Bytes, seq: u64, media: Bytes) -> Bytes {
        let mut message = BytesMut::with_capacity(init.len() + media.len());
        message.extend_from_slice(init);
        message.extend_from_slice(&media);
        let mut next = seq + 1;
        while message.len() < init.len() + PROBE_MEDIA_BYTES {
            let Some(chunk) = self.get(next) else { break };
            message.extend_from_slice(&chunk);
            next += 1;
        }
        message.freeze()
    }

    fn entry(&self, seq: u64) -> Option<&Entry> {
        let idx = usize::try_from(seq.checked_sub(self.base_seq)?).ok()?;
        self.entries.get(idx)
    }

    /// Accounted offset just after chunk `seq` (the head's own offset for `seq` = head).
    fn end_acc(&self, seq: u64) -> Option<u64> {
        if seq >= self.head_seq() {
            return (seq == self.head_seq()).then_some(self.head_acc);
        }
        let next = seq + 1;
        if next == self.head_seq() {
            return self.entry(seq).map(|_| self.head_acc);
        }
        self.entry(seq)?;
        self.entry(next).map(|e| e.acc)
    }

    fn get(&self, seq: u64) -> Option<Bytes> {
        self.entry(seq).map(|e| e.bytes.clone())
    }

    fn range(&self, from: u64, to: u64) -> Vec<Bytes> {
        (from..to).filter_map(|seq| self.get(seq)).collect()
    }

    /// Drops chunks that are neither cached nor within any non-lagging receiver's reach
    /// (nor the rest of its group, see [`ChunkLog::finishes_a_group`]), and the oldest
    /// ones beyond `MAX_LOG_CHUNKS` (cached or not).
    fn trim(&mut self) {
        while let Some(front) = self.entries.front() {
            let uncached = self.base_seq < self.cache_start_seq;
            let front_end = front.acc + front.bytes.len() as u64 + CHUNK_OVERHEAD;
            let out_of_window = self.head_acc - front_end > self.receiver_queue_bytes;
            let too_many = self.entries.len() > MAX_LOG_CHUNKS;
            let droppable = out_of_window && !self.finishes_a_group(front_end);
            if !(too_many || uncached && droppable) {
                break;
            }
            if !uncached {
                self.evict_to(self.base_seq + 1);
            }
            self.entries.pop_front();
            self.base_seq += 1;
            while self.joins.front().is_some_and(|seq| *seq < self.base_seq) {
                self.joins.pop_front();
            }
        }
    }
}

pub(crate) mod overload;
#[cfg(test)]
mod tests;
