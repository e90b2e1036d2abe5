//! The chunk format and the receiver-side checks: pure functions, no I/O.
//!
//! A chunk is `seq` (u64 LE), `sent_ns` (u64 LE, nanoseconds since the tool's
//! epoch), `seed` (u64 LE, a hash of `seq`), then a payload whose 8-byte word
//! `k` is `seed + k * GOLDEN` (little endian; the last word may be cut short).
//! Receivers check the length, the seed, the first and the last payload word of
//! every chunk, and every word of every `verify_every`-th chunk.

use std::collections::BTreeSet;

/// Bytes before the payload: seq, send time, seed.
pub(crate) const HEADER_LEN: usize = 24;
/// Smallest chunk the tool sends: the header plus one payload word.
pub(crate) const MIN_CHUNK: usize = HEADER_LEN + 8;
/// Gaps remembered to tell a late chunk from a duplicate.
const MAX_REMEMBERED_GAPS: usize = 4096;
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The header fields of a verified chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub seq: u64,
    pub sent_ns: u64,
}

/// Why a chunk's content is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Corruption {
    Length { expected: usize, got: usize },
    Seed,
    Payload { word: usize },
}

/// The seed of chunk `seq` (splitmix64).
pub(crate) fn seed_of(seq: u64) -> u64 {
    let mut z = seq.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn word(seed: u64, k: usize) -> u64 {
    seed.wrapping_add((k as u64).wrapping_mul(GOLDEN))
}

/// Writes chunk `seq` into `buf` (its whole length is the chunk).
pub(crate) fn fill(buf: &mut [u8], seq: u64, sent_ns: u64) {
    let seed = seed_of(seq);
    buf[0..8].copy_from_slice(&seq.to_le_bytes());
    buf[8..16].copy_from_slice(&sent_ns.to_le_bytes());
    buf[16..24].copy_from_slice(&seed.to_le_bytes());
    let payload = &mut buf[HEADER_LEN..];
    let mut words = payload.chunks_exact_mut(8);
    let mut k = 0;
    for w in &mut words {
        w.copy_from_slice(&word(seed, k).to_le_bytes());
        k += 1;
    }
    let tail = words.into_remainder();
    let last = word(seed, k).to_le_bytes();
    let n = tail.len();
    tail.copy_from_slice(&last[..n]);
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

fn word_ok(payload: &[u8], seed: u64, k: usize) -> bool {
    let start = k * 8;
    let end = (start + 8).min(payload.len());
    let want = word(seed, k).to_le_bytes();
    payload[start..end] == want[..end - start]
}

/// Checks a received chunk; `full` checks every payload word.
pub(crate) fn verify(data: &[u8], expected_len: usize, full: bool) -> Result<Stamp, Corruption> {
    if data.len() != expected_len || data.len() < MIN_CHUNK {
        return Err(Corruption::Length {
            expected: expected_len,
            got: data.len(),
        });
    }
    let seq = read_u64(data, 0);
    let sent_ns = read_u64(data, 8);
    let seed = read_u64(data, 16);
    if seed != seed_of(seq) {
        return Err(Corruption::Seed);
    }
    let payload = &data[HEADER_LEN..];
    let words = payload.len().div_ceil(8);
    let bad = if full {
        (0..words).find(|&k| !word_ok(payload, seed, k))
    } else {
        [0, words - 1]
            .into_iter()
            .find(|&k| !word_ok(payload, seed, k))
    };
    match bad {
        Some(word) => Err(Corruption::Payload { word }),
        None => Ok(Stamp { seq, sent_ns }),
    }
}

/// XORs `payload` with a WebSocket masking key (RFC 6455 §5.3).
pub(crate) fn apply_mask(payload: &mut [u8], key: [u8; 4]) {
    let k32 = u32::from_ne_bytes(key) as u64;
    let k64 = k32 | (k32 << 32);
    let mut words = payload.chunks_exact_mut(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        w.copy_from_slice(&(u64::from_ne_bytes(b) ^ k64).to_ne_bytes());
    }
    for (i, b) in words.into_remainder().iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

// === impl SeqChecker ===

/// What one sequence number tells about the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    InOrder,
    /// `n` chunks were skipped before this one.
    Gap(u64),
    /// A chunk that was missing arrived after later ones.
    Late,
    Duplicate,
}

/// Order, loss and duplication accounting for one receiver.
#[derive(Debug, Default, Clone)]
pub(crate) struct SeqChecker {
    next: u64,
    missing: BTreeSet<u64>,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
}

impl SeqChecker {
    /// The next sequence number expected (= chunks accounted for).
    pub(crate) fn next(&self) -> u64 {
        self.next
    }

    pub(crate) fn observe(&mut self, seq: u64) -> Verdict {
        if seq == self.next {
            self.next += 1;
            return Verdict::InOrder;
        }
        if seq > self.next {
            let gap = seq - self.next;
            for s in self.next..seq {
                if self.missing.len() >= MAX_REMEMBERED_GAPS {
                    break;
                }
                self.missing.insert(s);
            }
            self.lost += gap;
            self.next = seq + 1;
            return Verdict::Gap(gap);
        }
        if self.missing.remove(&seq) {
            self.lost -= 1;
            self.reordered += 1;
            Verdict::Late
        } else {
            self.duplicated += 1;
            Verdict::Duplicate
        }
    }

    /// Counts the chunks after the last one seen as lost; `published` is the
    /// number of chunks the publisher sent.
    pub(crate) fn finish(&mut self, published: u64) {
        if published > self.next {
            self.lost += published - self.next;
            self.next = published;
        }
    }

    #[cfg(test)]
    pub(crate) fn errors(&self) -> u64 {
        self.lost + self.duplicated + self.reordered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(seq: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        fill(&mut b, seq, 42);
        b
    }

    #[test]
    fn a_filled_chunk_verifies_fully() {
        for len in [MIN_CHUNK, 33, 100, 31_250, 65_536] {
            let b = chunk(7, len);
            let s = verify(&b, len, true).unwrap();
            assert_eq!(
                s,
                Stamp {
                    seq: 7,
                    sent_ns: 42
                }
            );
        }
    }

    #[test]
    fn wrong_length_and_seed_are_flagged() {
        let b = chunk(1, 100);
        assert!(matches!(
            verify(&b[..99], 100, false),
            Err(Corruption::Length { .. })
        ));
        let mut b = chunk(1, 100);
        b[0] = 2;
        assert_eq!(verify(&b, 100, false), Err(Corruption::Seed));
    }

    #[test]
    fn edge_words_are_checked_on_every_chunk_middle_ones_on_full_checks() {
        let mut b = chunk(3, 1000);
        b[HEADER_LEN] ^= 1;
        assert_eq!(
            verify(&b, 1000, false),
            Err(Corruption::Payload { word: 0 })
        );
        let mut b = chunk(3, 1000);
        b[999] ^= 0x80;
        assert!(matches!(
            verify(&b, 1000, false),
            Err(Corruption::Payload { .. })
        ));
        let mut b = chunk(3, 1000);
        b[500] ^= 4;
        assert!(verify(&b, 1000, false).is_ok());
        assert_eq!(
            verify(&b, 1000, true),
            Err(Corruption::Payload { word: 59 })
        );
    }

    #[test]
    fn masking_twice_gives_the_input_back() {
        let b = chunk(9, 1001);
        let mut m = b.clone();
        apply_mask(&mut m, [1, 2, 3, 4]);
        assert_ne!(m, b);
        assert_eq!(m[0], b[0] ^ 1);
        assert_eq!(m[1000], b[1000] ^ 1);
        assert_eq!(m[999], b[999] ^ 4);
        apply_mask(&mut m, [1, 2, 3, 4]);
        assert_eq!(m, b);
    }

    #[test]
    fn in_order_stream_has_no_errors() {
        let mut c = SeqChecker::default();
        for s in 0..100 {
            assert_eq!(c.observe(s), Verdict::InOrder);
        }
        c.finish(100);
        assert_eq!(c.errors(), 0);
    }

    #[test]
    fn loss_is_counted_in_the_middle_and_at_the_end() {
        let mut c = SeqChecker::default();
        c.observe(0);
        assert_eq!(c.observe(3), Verdict::Gap(2));
        c.finish(6);
        assert_eq!(c.lost, 4);
        assert_eq!(c.errors(), 4);
    }

    #[test]
    fn duplicates_and_reordering_are_told_apart() {
        let mut c = SeqChecker::default();
        c.observe(0);
        c.observe(2);
        assert_eq!(c.observe(1), Verdict::Late);
        assert_eq!(c.observe(1), Verdict::Duplicate);
        assert_eq!(c.observe(2), Verdict::Duplicate);
        c.finish(3);
        assert_eq!((c.lost, c.reordered, c.duplicated), (0, 1, 2));
        assert_eq!(c.errors(), 3);
    }
}
