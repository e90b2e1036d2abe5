use proptest::prelude::*;

use super::super::{MediaUpdate, CHUNK_OVERHEAD};
use super::*;

/// Stream byte at offset `o`: lets a test tell which bytes a receiver got.
fn byte_at(o: u64) -> u8 {
    (o % 251) as u8
}

/// A log of chunks of the given lengths, the stream understood, with join points at
/// `joins` (absolute offsets), each announced with the chunk that holds it.
fn log_of(window: u64, lens: &[usize], joins: &[u64]) -> (ChunkLog, Vec<u8>) {
    let mut log = ChunkLog::new(0, window);
    let mut stream = Vec::new();
    for (i, len) in lens.iter().enumerate() {
        let start = stream.len() as u64;
        let chunk: Vec<u8> = (start..start + *len as u64).map(byte_at).collect();
        stream.extend_from_slice(&chunk);
        let end = stream.len() as u64;
        let update = MediaUpdate {
            init: (i == 0).then(|| Bytes::from_static(b"INIT")),
            joins: joins
                .iter()
                .copied()
                .filter(|j| (start..end).contains(j))
                .collect(),
            failed: false,
        };
        log.push(Bytes::from(chunk), update);
    }
    (log, stream)
}

fn concat(chunks: &[Bytes]) -> Vec<u8> {
    chunks.iter().flat_map(|c| c.iter().copied()).collect()
}

#[test]
fn a_laggard_finishes_its_group_then_jumps_to_the_newest_join_point() {
    // Chunks of 100 bytes; groups start at 150, 420 and 810.
    let (log, stream) = log_of(1 << 20, &[100; 10], &[0, 150, 420, 810]);
    let skip = log.skip(2).expect("a skip");
    // The rest of its group: chunks 2 and 3, then chunk 4 up to offset 420.
    assert_eq!(concat(&skip.tail), stream[200..420]);
    assert_eq!(&skip.media[..], &stream[810..900]);
    assert_eq!(skip.cursor, 9);
    assert_eq!(skip.skipped_bytes, 810 - 420);
    // At a group's first byte, nothing of the old group is left to send.
    let (log, stream) = log_of(1 << 20, &[100; 10], &[0, 400, 810]);
    let skip = log.skip(4).expect("a skip");
    assert!(skip.tail.is_empty());
    assert_eq!(&skip.media[..], &stream[810..900]);
}

#[test]
fn a_planned_skip_moves_to_the_newest_join_point_and_keeps_its_tail() {
    // Groups at 150, 420 and 510: a skip from chunk 2 goes to 510; then a join at 810 arrives.
    let (log, stream) = log_of(1 << 20, &[100; 6], &[0, 150, 420, 510]);
    let mut skip = log.skip(2).expect("a skip");
    let tail = concat(&skip.tail);
    assert_eq!(tail, stream[200..420]);
    assert_eq!(skip.cursor, 6);
    // Nothing newer yet: it stays where it is.
    assert_eq!(log.retarget(&mut skip), Err(NoSkip::NoNewerJoin));
    let (log, stream_after) = log_of(1 << 20, &[100; 10], &[0, 150, 420, 510, 810]);
    assert_eq!(stream_after[..600], stream[..]);
    let before = skip.skipped_bytes;
    log.retarget(&mut skip).expect("moved to 810");
    assert_eq!(concat(&skip.tail), tail, "the rest of its group is kept");
    assert_eq!(&skip.media[..], &stream_after[810..900]);
    assert_eq!(skip.cursor, 9);
    assert_eq!(skip.skipped_bytes, before + (810 - 510));
    // Never backwards, never twice to the same point.
    assert_eq!(log.retarget(&mut skip), Err(NoSkip::NoNewerJoin));
}

#[test]
fn no_skip_without_somewhere_newer_to_go() {
    let (log, _) = log_of(1 << 20, &[100; 10], &[0, 150]);
    assert_eq!(log.skip(2), Err(NoSkip::NoNewerJoin));
    assert_eq!(log.skip(0).map(|s| s.cursor), Ok(2));
    let mut opaque = ChunkLog::new(0, 1 << 20);
    opaque.push(Bytes::from_static(b"xyz"), MediaUpdate::default());
    assert_eq!(opaque.skip(0), Err(NoSkip::Opaque));
}

#[test]
fn a_join_point_itself_over_the_bound_is_no_skip() {
    // Window of 500 accounted bytes (the log holds 1,000); the newest join point is
    // in chunk 2, six chunks (696 bytes) back.
    let (log, _) = log_of(500, &[100; 9], &[0, 150, 250]);
    assert_eq!(log.base_seq, 0);
    assert_eq!(log.skip(1), Err(NoSkip::JoinTooOld));
}

#[test]
fn an_understood_log_keeps_twice_the_window_an_opaque_one_the_window() {
    let (log, _) = log_of(1000, &[100; 50], &[0, 1000, 2000, 3000, 4000]);
    let held = log.head_acc() - log.acc_of(log.base_seq);
    assert!(held <= 2 * 1000 + 100 + CHUNK_OVERHEAD, "{held}");
    assert!(held > 1000 + 100 + CHUNK_OVERHEAD, "{held}");
    let mut opaque = ChunkLog::new(0, 1000);
    for _ in 0..50 {
        opaque.push(Bytes::from(vec![0; 100]), MediaUpdate::default());
    }
    assert!(opaque.head_acc() - opaque.acc_of(opaque.base_seq) <= 1000 + 116);
}

#[test]
fn a_receiver_skips_once_a_minute_at_most() {
    let mut history = SkipHistory::default();
    let t0 = Instant::now();
    assert!(history.allow(t0));
    assert!(!history.allow(t0 + Duration::from_secs(59)));
    assert!(history.allow(t0 + Duration::from_secs(60)));
    assert!(!history.allow(t0 + Duration::from_secs(61)));
}

#[test]
fn decide_follows_the_setting_and_the_history() {
    let (log, _) = log_of(1 << 20, &[100; 10], &[0, 150, 420, 810]);
    let lagged = Lagged {
        behind_bytes: 1,
        cause: "over its queue bound",
    };
    let now = Instant::now();
    let mut history = SkipHistory::default();
    let close = decide(&log, LaggingReceivers::Close, &mut history, 2, lagged, now);
    assert_eq!(close, Err(lagged));
    assert!(decide(&log, LaggingReceivers::Skip, &mut history, 2, lagged, now).is_ok());
    let again = decide(&log, LaggingReceivers::Skip, &mut history, 3, lagged, now);
    assert_eq!(
        again.map_err(|l| l.cause),
        Err("skipped again within a minute")
    );
}

/// Chunk lengths, join offsets (sorted, distinct, inside the stream), a window.
fn stream_shape() -> impl Strategy<Value = (Vec<usize>, Vec<u64>, u64)> {
    (prop::collection::vec(1usize..300, 1..60), 100u64..6000).prop_flat_map(|(lens, window)| {
        let total: u64 = lens.iter().map(|l| *l as u64).sum();
        let joins = prop::collection::btree_set(0..total, 0..20)
            .prop_map(|set| set.into_iter().collect::<Vec<u64>>());
        (Just(lens), joins, Just(window))
    })
}

proptest! {
    /// A skip sends the exact rest of the receiver's group, then the stream from the
    /// newest join point, never past the head and never still over the bound; and it
    /// is refused only when there is no such place.
    #[test]
    fn skips_land_on_join_points_only((lens, joins, window) in stream_shape()) {
        let (log, stream) = log_of(window, &lens, &joins);
        let starts: Vec<u64> = lens
            .iter()
            .scan(0u64, |at, l| { let s = *at; *at += *l as u64; Some(s) })
            .collect();
        // The first join point of each chunk is the one the log knows.
        let first_joins: Vec<u64> = starts
            .iter()
            .zip(&lens)
            .filter_map(|(s, l)| joins.iter().copied().find(|j| (*s..*s + *l as u64).contains(j)))
            .collect();
        for cursor in 0..=log.head_seq() {
            let result = log.skip(cursor);
            if cursor < log.base_seq {
                prop_assert_eq!(result, Err(NoSkip::TailGone));
                continue;
            }
            let from = starts.get(cursor as usize).copied().unwrap_or(stream.len() as u64);
            let end = first_joins.iter().copied().find(|j| *j >= from);
            let newest = first_joins.last().copied();
            match (end, newest) {
                (Some(end), Some(newest)) if newest > end => {
                    let seq = starts.partition_point(|s| *s <= newest) as u64 - 1;
                    if log.check_lag(seq + 1).is_err() {
                        prop_assert_eq!(result, Err(NoSkip::JoinTooOld));
                        continue;
                    }
                    let skip = result.expect("a skip");
                    prop_assert_eq!(concat(&skip.tail), &stream[from as usize..end as usize]);
                    let chunk_end = starts.get(seq as usize + 1).copied().unwrap_or(stream.len() as u64);
                    prop_assert_eq!(&skip.media[..], &stream[newest as usize..chunk_end as usize]);
                    prop_assert_eq!(skip.cursor, seq + 1);
                    prop_assert!(skip.cursor <= log.head_seq());
                    prop_assert!(log.check_lag(skip.cursor).is_ok());
                    prop_assert_eq!(skip.skipped_bytes, newest - end);
                }
                _ => prop_assert_eq!(result, Err(NoSkip::NoNewerJoin)),
            }
        }
    }

    /// A receiver that was within the window before a push of at most a window's bytes
    /// still finds the rest of its group after it.
    #[test]
    fn a_fresh_laggard_always_finds_the_rest_of_its_group(
        (lens, joins, window) in stream_shape(),
        extra in prop::collection::vec(1usize..300, 1..40),
    ) {
        let (mut log, _) = log_of(window, &lens, &joins);
        let fresh: Vec<u64> = (log.base_seq..=log.head_seq())
            .filter(|c| log.check_lag(*c).is_ok())
            .collect();
        let mut pushed = 0u64;
        for len in extra {
            if pushed + len as u64 + CHUNK_OVERHEAD > window {
                break;
            }
            pushed += len as u64 + CHUNK_OVERHEAD;
            log.push(Bytes::from(vec![0; len]), MediaUpdate::default());
        }
        for cursor in fresh {
            prop_assert_ne!(log.skip(cursor), Err(NoSkip::TailGone));
        }
    }
}
