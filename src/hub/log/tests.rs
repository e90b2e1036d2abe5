use super::*;

fn chunk(n: u8, len: usize) -> Bytes {
    Bytes::from(vec![n; len])
}

fn push(log: &mut ChunkLog, bytes: Bytes) {
    log.push(bytes, MediaUpdate::default());
}

fn firsts(chunks: &[Bytes]) -> Vec<u8> {
    chunks.iter().map(|c| c[0]).collect()
}

#[test]
fn cache_evicts_oldest_first_with_overhead() {
    // Room for two chunks of 100 bytes (2 * 116 = 232), not three.
    let mut log = ChunkLog::new(240, 1 << 20);
    for n in 1..=3 {
        push(&mut log, chunk(n, 100));
    }
    assert_eq!(firsts(&log.cached()), [2, 3]);
    assert_eq!(log.cache_bytes(), 232);
    assert_eq!(firsts(&log.start(true).replay), [2]);
}

#[test]
fn zero_disables_the_cache() {
    let mut log = ChunkLog::new(0, 1 << 20);
    push(&mut log, chunk(1, 10));
    assert!(log.cached().is_empty());
    assert!(log.start(true).replay.is_empty());
    assert_eq!(log.cache_bytes(), 0);
}

#[test]
fn stop_caching_empties_and_stays_off() {
    let mut log = ChunkLog::new(1 << 20, 1 << 20);
    push(&mut log, chunk(1, 10));
    log.clear_history();
    assert!(log.cached().is_empty());
    push(&mut log, chunk(2, 10));
    assert!(log.cached().is_empty());
}

#[test]
fn reading_follows_the_head_in_order() {
    let mut log = ChunkLog::new(0, 1 << 20);
    let mut cursor = log.head_seq();
    for n in 0..10 {
        push(&mut log, chunk(n, 10));
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
    push(&mut log, chunk(0, 600));
    // What is queued beyond the chunk it sends next counts, with 16 bytes per chunk.
    assert_eq!(log.check_lag(stuck), Ok(0));
    push(&mut log, chunk(1, 600));
    assert_eq!(log.check_lag(stuck), Ok(616));
    push(&mut log, chunk(2, 600));
    assert!(log.check_lag(stuck).is_err());
    for n in 3..100 {
        push(&mut log, chunk(n, 600));
        assert!(log.retained_bytes() <= 1000 + 2 * 600);
    }
    let mut out = Vec::new();
    assert!(log.read(stuck, 10, u64::MAX, &mut out).is_err());
    assert!(out.is_empty());
    assert_eq!(log.check_lag(log.head_seq()), Ok(0));
}

#[test]
fn one_chunk_larger_than_the_window_lags_nobody() {
    let mut log = ChunkLog::new(0, 1000);
    let cursor = log.head_seq();
    push(&mut log, chunk(0, 5000));
    assert_eq!(log.check_lag(cursor), Ok(0));
}

#[test]
fn empty_and_tiny_chunks_are_bounded_too() {
    let mut log = ChunkLog::new(1 << 20, 1 << 20);
    let stuck = log.head_seq();
    for _ in 0..200_000 {
        push(&mut log, Bytes::new());
    }
    // 16 bytes each: the lag window and the cache hold about 65,536 of them.
    assert!(log.check_lag(stuck).is_err());
    assert!(log.cached().len() <= (1 << 20) / 16);
    let mut many = ChunkLog::new(u64::MAX, u64::MAX);
    for _ in 0..(MAX_LOG_CHUNKS + 10) {
        many.push(Bytes::new(), MediaUpdate::default());
    }
    assert_eq!(many.cached().len(), MAX_LOG_CHUNKS);
}

#[test]
fn cached_chunks_are_kept_beyond_the_lag_window() {
    let mut log = ChunkLog::new(10_000, 100);
    for n in 0..20 {
        push(&mut log, chunk(n, 50));
    }
    assert_eq!(log.cached().len(), 20);
    log.clear_history();
    assert!(log.retained_bytes() <= 100);
}

/// A stream whose chunk `n` is `[n; len]`, with a join point at the start of the given chunks.
fn media_log(limit: u64, chunks: u8, len: usize, joins: &[u8]) -> ChunkLog {
    let mut log = ChunkLog::new(limit, 1 << 30);
    for n in 0..chunks {
        let start = u64::from(n) * len as u64;
        let update = MediaUpdate {
            init: (n == 0).then(|| Bytes::from_static(b"INIT")),
            joins: if joins.contains(&n) {
                vec![start + 1]
            } else {
                vec![]
            },
            failed: false,
        };
        log.push(chunk(n, len), update);
    }
    log
}

#[test]
fn intact_history_replays_the_exact_chunks() {
    let log = media_log(1 << 20, 5, 10, &[0, 3]);
    let start = log.start(false);
    assert_eq!(firsts(&start.replay), [0, 1, 2, 3, 4]);
    assert!(start.await_join.is_none());
    assert_eq!(firsts(&log.start(true).replay), [0]);
}

#[test]
fn eviction_drops_whole_groups_and_joiners_start_at_a_join_point() {
    // Each chunk costs 116 bytes; 500 hold four. Groups start at chunks 0, 3 and 6.
    let log = media_log(500, 8, 100, &[0, 3, 6]);
    let start = log.start(false);
    assert_eq!(&start.replay[0][..], b"INIT");
    // Media from the join point inside chunk 6 (offset 1), then chunk 7.
    assert_eq!(start.replay[1].len(), 99);
    assert_eq!(start.replay[1][0], 6);
    assert_eq!(firsts(&start.replay[2..]), [7]);
    assert_eq!(log.cache_bytes(), 2 * 116);
    let probe = log.start(true);
    assert_eq!(probe.replay.len(), 1);
    assert!(probe.replay[0].starts_with(b"INIT"));
    assert_eq!(probe.replay[0].len(), 4 + 99 + 100);
}

#[test]
fn a_group_larger_than_the_bound_makes_joiners_wait_for_the_next_join_point() {
    let mut log = media_log(300, 6, 100, &[0]);
    let start = log.start(false);
    assert!(start.replay.is_empty());
    assert_eq!(start.await_join.as_deref(), Some(&b"INIT"[..]));
    let cursor = start.cursor;
    assert_eq!(log.next_join(cursor), (cursor, None));
    log.push(
        chunk(9, 100),
        MediaUpdate {
            joins: vec![log.head_offset() + 50],
            ..MediaUpdate::default()
        },
    );
    let (after, media) = log.next_join(cursor);
    assert_eq!(after, log.head_seq());
    assert_eq!(media.map(|m| m.len()), Some(50));
}

#[test]
fn clearing_keeps_the_init_and_latest_group_of_an_understood_stream() {
    let mut log = media_log(1 << 20, 6, 10, &[0, 2, 4]);
    log.clear_history();
    let start = log.start(false);
    assert_eq!(&start.replay[0][..], b"INIT");
    assert_eq!(start.replay[1][0], 4);
    assert_eq!(firsts(&start.replay[2..]), [5]);
    assert_eq!(log.cache_bytes(), 2 * (10 + CHUNK_OVERHEAD));
}

#[test]
fn a_failed_scan_falls_back_to_opaque_behaviour() {
    let mut log = media_log(500, 8, 100, &[0, 3, 6]);
    log.push(
        chunk(8, 100),
        MediaUpdate {
            failed: true,
            ..MediaUpdate::default()
        },
    );
    assert!(!log.understood());
    let start = log.start(false);
    assert!(start.await_join.is_none());
    assert!(!start.replay.iter().any(|c| &c[..] == b"INIT"));
}

#[test]
fn late_join_marks_land_in_earlier_chunks() {
    let mut log = ChunkLog::new(150, 1 << 30);
    log.push(
        chunk(0, 100),
        MediaUpdate {
            init: Some(Bytes::from_static(b"I")),
            ..MediaUpdate::default()
        },
    );
    log.push(chunk(1, 100), MediaUpdate::default());
    // The scanner decides about a cluster starting in chunk 1 only while reading chunk 2.
    log.push(
        chunk(2, 100),
        MediaUpdate {
            joins: vec![190],
            ..MediaUpdate::default()
        },
    );
    let (_, media) = log.next_join(0);
    assert_eq!(media.map(|m| (m[0], m.len())), Some((1, 10)));
}

#[test]
fn a_play_reader_starts_at_the_newest_join_point() {
    // Intact history: still the newest group, not the whole history.
    let log = media_log(1 << 20, 8, 10, &[0, 3, 6]);
    let start = log.start_at_edge();
    assert_eq!(&start.replay[0][..], b"INIT");
    assert_eq!(start.replay[1].len(), 9);
    assert_eq!(start.replay[1][0], 6);
    assert_eq!(firsts(&start.replay[2..]), [7]);
    assert_eq!(start.cursor, log.head_seq());
    // No join point cached: the init, then from the next live one.
    let log = media_log(300, 6, 100, &[0]);
    let start = log.start_at_edge();
    assert!(start.replay.is_empty());
    assert_eq!(start.await_join.as_deref(), Some(&b"INIT"[..]));
    // Opaque: the cache from its first chunk, as `receive`.
    let mut log = ChunkLog::new(1 << 20, 1 << 30);
    for n in 0..3 {
        push(&mut log, chunk(n, 10));
    }
    assert_eq!(firsts(&log.start_at_edge().replay), [0, 1, 2]);
}
