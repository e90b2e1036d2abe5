use super::*;

fn chunk(n: u8, len: usize) -> Bytes {
    Bytes::from(vec![n; len])
}

fn firsts(chunks: &[Bytes]) -> Vec<u8> {
    chunks.iter().map(|c| c[0]).collect()
}

#[test]
fn cache_evicts_oldest_first_with_overhead() {
    // Room for two chunks of 100 bytes (2 * 116 = 232), not three.
    let mut log = ChunkLog::new(240, 1 << 20);
    for n in 1..=3 {
        log.push(chunk(n, 100));
    }
    assert_eq!(firsts(&log.cached()), [2, 3]);
    assert_eq!(log.cache_bytes(), 232);
    assert_eq!(log.first_cached().map(|c| c[0]), Some(2));
}

#[test]
fn zero_disables_the_cache() {
    let mut log = ChunkLog::new(0, 1 << 20);
    log.push(chunk(1, 10));
    assert!(log.cached().is_empty());
    assert_eq!(log.first_cached(), None);
    assert_eq!(log.cache_bytes(), 0);
}

#[test]
fn stop_caching_empties_and_stays_off() {
    let mut log = ChunkLog::new(1 << 20, 1 << 20);
    log.push(chunk(1, 10));
    log.stop_caching();
    assert!(log.cached().is_empty());
    log.push(chunk(2, 10));
    assert!(log.cached().is_empty());
}

#[test]
fn reading_follows_the_head_in_order() {
    let mut log = ChunkLog::new(0, 1 << 20);
    let mut cursor = log.head_seq();
    for n in 0..10 {
        log.push(chunk(n, 10));
    }
    let mut out = Vec::new();
    cursor = log.read(cursor, 4, u64::MAX, &mut out).unwrap();
    assert_eq!(firsts(&out), [0, 1, 2, 3]);
    out.clear();
    cursor = log.read(cursor, 100, 25, &mut out).unwrap();
    assert_eq!(firsts(&out), [4, 5, 6]);
    out.clear();
    cursor = log.read(cursor, 100, u64::MAX, &mut out).unwrap();
    assert_eq!(firsts(&out), [7, 8, 9]);
    assert_eq!(cursor, log.head_seq());
}

#[test]
fn a_receiver_too_far_behind_lags_and_memory_stays_bounded() {
    let mut log = ChunkLog::new(0, 1000);
    let stuck = log.head_seq();
    log.push(chunk(0, 600));
    assert_eq!(log.check_lag(stuck), Ok(600));
    log.push(chunk(1, 600));
    assert!(log.check_lag(stuck).is_err());
    for n in 2..100 {
        log.push(chunk(n, 600));
        assert!(log.retained_bytes() <= 1000 + 600);
    }
    let mut out = Vec::new();
    assert!(log.read(stuck, 10, u64::MAX, &mut out).is_err());
    assert!(out.is_empty());
    // A receiver at the head is fine.
    assert_eq!(log.check_lag(log.head_seq()), Ok(0));
}

#[test]
fn cached_chunks_are_kept_beyond_the_lag_window() {
    let mut log = ChunkLog::new(10_000, 100);
    for n in 0..20 {
        log.push(chunk(n, 50));
    }
    assert_eq!(log.cached().len(), 20);
    log.stop_caching();
    assert!(log.retained_bytes() <= 100);
}
