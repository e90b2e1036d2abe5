//! The chunk log of one publishing session: a shared, append-only window of
//! chunks with a cursor per receiver.
//!
//! Two regions overlap at its head: the *cache* (what a new receiver is replayed,
//! bounded by `GOP_CACHE_SIZE_MB`) and the *lag window* (what a live receiver may
//! still be behind, bounded by `RECEIVER_QUEUE_MB`). Chunks outside both are
//! dropped; a receiver whose cursor falls outside the lag window is lagging.
//! Pure data structure: no locks, no clocks, no I/O.

use std::collections::VecDeque;

use bytes::Bytes;

/// Bytes of bookkeeping counted per cached chunk, as the original.
pub const CHUNK_OVERHEAD: u64 = 16;

#[derive(Debug)]
struct Entry {
    bytes: Bytes,
    /// Stream offset of the chunk's first byte.
    start: u64,
}

/// A receiver fell further behind than the lag window allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lagged {
    pub behind_bytes: u64,
}

#[derive(Debug)]
pub struct ChunkLog {
    entries: VecDeque<Entry>,
    /// Sequence number of `entries[0]`.
    base_seq: u64,
    head_offset: u64,
    cache_start_seq: u64,
    cache_bytes: u64,
    cache_limit: u64,
    caching: bool,
    lag_limit: u64,
}

impl ChunkLog {
    /// `cache_limit` 0 disables the cache; `lag_limit` bounds how far a receiver may fall behind.
    pub fn new(cache_limit: u64, lag_limit: u64) -> Self {
        Self {
            entries: VecDeque::new(),
            base_seq: 0,
            head_offset: 0,
            cache_start_seq: 0,
            cache_bytes: 0,
            cache_limit,
            caching: cache_limit > 0,
            lag_limit,
        }
    }

    /// Sequence number the next chunk will get.
    pub fn head_seq(&self) -> u64 {
        self.base_seq + self.entries.len() as u64
    }

    pub fn head_offset(&self) -> u64 {
        self.head_offset
    }

    /// Appends a chunk, evicting the oldest cached chunks and trimming what nobody may still need.
    pub fn push(&mut self, bytes: Bytes) {
        let len = bytes.len() as u64;
        self.entries.push_back(Entry {
            bytes,
            start: self.head_offset,
        });
        self.head_offset += len;
        if self.caching {
            self.cache_bytes += len + CHUNK_OVERHEAD;
            while self.cache_bytes > self.cache_limit && self.cache_start_seq < self.head_seq() {
                let evicted = self.len_of(self.cache_start_seq);
                self.cache_bytes -= evicted + CHUNK_OVERHEAD;
                self.cache_start_seq += 1;
            }
        } else {
            self.cache_start_seq = self.head_seq();
        }
        self.trim();
    }

    /// Empties the cache and stops caching for the rest of the session.
    pub fn stop_caching(&mut self) {
        self.caching = false;
        self.cache_start_seq = self.head_seq();
        self.cache_bytes = 0;
        self.trim();
    }

    /// The cached chunks, oldest first (shared, not copied).
    pub fn cached(&self) -> Vec<Bytes> {
        self.range(self.cache_start_seq, self.head_seq())
    }

    /// The first cached chunk, if any.
    pub fn first_cached(&self) -> Option<Bytes> {
        self.get(self.cache_start_seq)
    }

    /// Bytes held by the cache, overhead included.
    pub fn cache_bytes(&self) -> u64 {
        self.cache_bytes
    }

    /// Bytes of every chunk the log still references.
    pub fn retained_bytes(&self) -> u64 {
        self.entries
            .front()
            .map_or(0, |e| self.head_offset - e.start)
    }

    /// Appends chunks from `cursor` to `out` (at most `max_chunks` and about
    /// `max_bytes`) and returns the new cursor; fails when `cursor` lags.
    pub fn read(
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

    /// How far behind the head a receiver at `cursor` is, or `Lagged` once over the window.
    pub fn check_lag(&self, cursor: u64) -> Result<u64, Lagged> {
        let behind = match self.start_of(cursor) {
            Some(start) => self.head_offset - start,
            None => self.head_offset - self.entries.front().map_or(0, |e| e.start) + 1,
        };
        if cursor < self.base_seq || behind > self.lag_limit {
            Err(Lagged {
                behind_bytes: behind,
            })
        } else {
            Ok(behind)
        }
    }

    fn start_of(&self, seq: u64) -> Option<u64> {
        if seq == self.head_seq() {
            return Some(self.head_offset);
        }
        let idx = usize::try_from(seq.checked_sub(self.base_seq)?).ok()?;
        self.entries.get(idx).map(|e| e.start)
    }

    fn get(&self, seq: u64) -> Option<Bytes> {
        let idx = usize::try_from(seq.checked_sub(self.base_seq)?).ok()?;
        self.entries.get(idx).map(|e| e.bytes.clone())
    }

    fn len_of(&self, seq: u64) -> u64 {
        self.get(seq).map_or(0, |b| b.len() as u64)
    }

    fn range(&self, from: u64, to: u64) -> Vec<Bytes> {
        (from..to).filter_map(|seq| self.get(seq)).collect()
    }

    /// Drops chunks that are neither cached nor within any non-lagging receiver's reach.
    fn trim(&mut self) {
        while let Some(front) = self.entries.front() {
            let uncached = self.base_seq < self.cache_start_seq;
            let out_of_window = self.head_offset - front.start > self.lag_limit;
            if !(uncached && out_of_window) {
                break;
            }
            self.entries.pop_front();
            self.base_seq += 1;
        }
    }
}

#[cfg(test)]
mod tests;
