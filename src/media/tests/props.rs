use super::*;
use proptest::prelude::*;
use std::sync::OnceLock;

fn fixture_cached() -> &'static [u8] {
    static DATA: OnceLock<Vec<u8>> = OnceLock::new();
    DATA.get_or_init(fixture)
}

fn fixture_events() -> &'static [ScanEvent] {
    static EVENTS: OnceLock<Vec<ScanEvent>> = OnceLock::new();
    EVENTS.get_or_init(|| feed_whole(fixture_cached()))
}

/// Prefixes that steer random bytes into the deeper parsing code.
fn prefix(kind: u8) -> Vec<u8> {
    match kind % 5 {
        0 => Vec::new(),
        1 => crate::media::webm::EBML_MAGIC.to_vec(),
        2 => [ebml_header(), el_unknown(SEGMENT_ID)].concat(),
        3 => ftyp(),
        _ => [ftyp(), moov(&[(1, b"vide")], 0), b"\0\0\0\x40moof".to_vec()].concat(),
    }
}

/// Structural invariants of any event list.
fn check_events(events: &[ScanEvent], len: u64) {
    let errors = events
        .iter()
        .filter(|e| matches!(e, ScanEvent::Error(_)))
        .count();
    assert!(errors <= 1);
    if errors == 1 {
        assert!(matches!(events.last(), Some(ScanEvent::Error(_))));
    }
    let inits = events
        .iter()
        .filter(|e| matches!(e, ScanEvent::InitComplete { .. }))
        .count();
    assert!(inits <= 1);
    for e in events {
        match e {
            ScanEvent::InitComplete { len: l, .. } | ScanEvent::JoinPoint { offset: l } => {
                assert!(*l <= len)
            }
            ScanEvent::Error(_) => {}
        }
    }
    if let Some(j) = events
        .iter()
        .position(|e| matches!(e, ScanEvent::JoinPoint { .. }))
    {
        assert!(matches!(events.first(), Some(ScanEvent::InitComplete { .. })) && j > 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic_and_chunking_is_irrelevant(
        kind in 0u8..5,
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        sizes in proptest::collection::vec(1usize..64, 1..16),
    ) {
        let data = [prefix(kind), body].concat();
        let whole = feed_whole(&data);
        check_events(&whole, data.len() as u64);
        prop_assert_eq!(feed_sizes(&data, &sizes), whole);
    }

    #[test]
    fn mutated_fixture_never_panics(
        flips in proptest::collection::vec((0usize..4096, any::<u8>()), 1..8),
        seed in any::<u64>(),
    ) {
        let mut data = fixture_cached()[..64 * 1024].to_vec();
        for (i, b) in flips {
            data[i] ^= b | 1;
        }
        let whole = feed_whole(&data);
        check_events(&whole, data.len() as u64);
        prop_assert_eq!(feed_random(&data, seed, 4096), whole);
    }

    #[test]
    fn truncated_fixture_gives_prefix_of_events(cut in 0usize..471_000, seed in any::<u64>()) {
        let data = &fixture_cached()[..cut.min(fixture_cached().len())];
        let events = feed_random(data, seed, 4096);
        prop_assert!(!has_error(&events));
        prop_assert!(fixture_events().starts_with(&events));
    }

    #[test]
    fn random_chunking_of_fixture_is_irrelevant(sizes in proptest::collection::vec(1usize..=4096, 1..64)) {
        prop_assert_eq!(feed_sizes(fixture_cached(), &sizes), fixture_events());
    }

    #[test]
    fn huge_claimed_sizes_never_allocate(
        width in 1usize..=8,
        id in prop_oneof![Just(vec![0xECu8]), Just(vec![0xA3u8]), Just(CLUSTER_ID.to_vec()), Just(vec![0x16, 0x54, 0xAE, 0x6B])],
        tail in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        // Largest known size of the given width (all-ones minus one), 2^56 - 2 for width 8.
        let size = (1u64 << (7 * width)) - 2;
        let field = (size | (1u64 << (7 * width))).to_be_bytes()[8 - width..].to_vec();
        let data = [ebml_header(), el_unknown(SEGMENT_ID), id, field, tail].concat();
        let events = feed_random(&data, 9, 17);
        check_events(&events, data.len() as u64);
    }
}
