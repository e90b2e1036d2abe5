use super::*;
use crate::media::{Container, SizeField};

/// Independent, non-incremental look at the fixture: offsets of all Cluster
/// IDs, and for each the Cluster timecode and whether its first block of
/// track 1 (video) is a keyframe.
fn naive_clusters(data: &[u8]) -> Vec<(u64, u64, bool)> {
    let vint = |p: usize| {
        let len = data[p].leading_zeros() as usize + 1;
        let v = data[p..p + len]
            .iter()
            .fold(0u64, |a, &b| (a << 8) | u64::from(b));
        (v & (u64::MAX >> (64 - 7 * len)), len)
    };
    let starts: Vec<usize> = data
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == CLUSTER_ID)
        .map(|(i, _)| i)
        .collect();
    starts
        .iter()
        .map(|&c| {
            let mut p = c + 4 + vint(c + 4).1;
            let (mut timecode, mut key) = (0, false);
            while p < data.len() {
                let id_len = data[p].leading_zeros() as usize + 1;
                let (size, n) = vint(p + id_len);
                let body = p + id_len + n;
                match &data[p..p + id_len] {
                    [0xE7] => {
                        timecode = data[body..body + size as usize]
                            .iter()
                            .fold(0, |a, &b| (a << 8) | u64::from(b))
                    }
                    [0xA3] if data[body] == 0x81 => {
                        key = data[body + 3] & 0x80 != 0;
                        break;
                    }
                    _ => {}
                }
                p = body + size as usize;
            }
            (c as u64, timecode, key)
        })
        .collect()
}

#[test]
fn fixture_whole_matches_independent_search() {
    let data = fixture();
    let events = feed_whole(&data);
    let clusters = naive_clusters(&data);
    assert_eq!(clusters.len(), 22);
    let first_cluster = clusters[0].0;
    assert_eq!(
        events[0],
        ScanEvent::InitComplete {
            len: first_cluster,
            segment_size: None
        }
    );
    let expected: Vec<u64> = clusters.iter().filter(|c| c.2).map(|c| c.0).collect();
    assert_eq!(joins(&events), expected);
    let times: Vec<u64> = clusters.iter().filter(|c| c.2).map(|c| c.1).collect();
    assert_eq!(expected.len(), 2);
    assert!(
        times[0] < 100 && (8400..=8600).contains(&times[1]),
        "keyframe times {times:?}"
    );
    assert_eq!(events.len(), 3);
}

#[test]
fn fixture_random_chunks_give_same_events() {
    let data = fixture();
    let whole = feed_whole(&data);
    for seed in [1, 7, 42, 1234, 99_999] {
        assert_eq!(feed_random(&data, seed, 4096), whole, "seed {seed}");
    }
    assert_eq!(feed_random(&data, 5, 3), whole);
    assert_eq!(feed_sizes(&data, &[1]), whole);
}

#[test]
fn fixture_init_is_reproducible() {
    let data = fixture();
    let mut s = Scanner::new();
    let mut out = Vec::new();
    s.feed(&data[..100], &mut out);
    assert_eq!(s.container(), Container::WebM);
    assert!(out.is_empty());
    s.feed(&data[100..], &mut out);
    let ScanEvent::InitComplete { len, .. } = out[0] else {
        panic!("{out:?}")
    };
    // A late joiner gets init + stream from a join point: that must parse the same.
    let join = joins(&out)[1] as usize;
    let joined = [&data[..len as usize], &data[join..]].concat();
    let events = feed_whole(&joined);
    assert_eq!(joins(&events).first(), Some(&len));
    assert!(!has_error(&events));
}

fn known_size_stream(segment_known: bool) -> (Vec<u8>, Vec<u64>) {
    let mut body = segment_head(&[(1, 1), (2, 2)]);
    let clusters = [
        cluster_body(&[
            simple_block(2, true),
            simple_block(1, true),
            simple_block(1, false),
        ]),
        cluster_body(&[simple_block(2, true), simple_block(1, false)]),
        cluster_body(&[simple_block(1, true)]),
        cluster_body(&[simple_block(2, true)]), // no video block: not a join point
    ];
    let mut offsets = Vec::new();
    for c in &clusters {
        offsets.push(body.len());
        body.extend(el(CLUSTER_ID, c));
    }
    let seg = if segment_known {
        el(SEGMENT_ID, &body)
    } else {
        [el_unknown(SEGMENT_ID), body.clone()].concat()
    };
    let head = ebml_header().len() + seg.len() - body.len();
    let joins = [offsets[0], offsets[2]].map(|o| (head + o) as u64).to_vec();
    ([ebml_header(), seg].concat(), joins)
}

#[test]
fn known_size_clusters_and_segment() {
    let (data, expected) = known_size_stream(true);
    let events = feed_whole(&data);
    let ScanEvent::InitComplete {
        len,
        segment_size: Some(field),
    } = events[0]
    else {
        panic!("{events:?}")
    };
    assert_eq!(len, expected[0]);
    assert_eq!(joins(&events), expected);
    assert_eq!(
        field,
        SizeField {
            offset: ebml_header().len() as u64 + 4,
            width: 2
        }
    );
    let mut init = data[..len as usize].to_vec();
    assert!(field.make_unknown(&mut init));
    assert_eq!(&init[field.offset as usize..][..2], &[0x7F, 0xFF]);
    assert_eq!(feed_random(&data, 3, 7), events);
}

#[test]
fn unknown_size_segment_known_clusters() {
    let (data, expected) = known_size_stream(false);
    let events = feed_whole(&data);
    assert_eq!(
        events[0],
        ScanEvent::InitComplete {
            len: expected[0],
            segment_size: None
        }
    );
    assert_eq!(joins(&events), expected);
}

#[test]
fn unknown_size_clusters_with_block_groups_and_trailing_cues() {
    let mut data = [
        ebml_header(),
        el_unknown(SEGMENT_ID),
        segment_head(&[(1, 1), (2, 2)]),
    ]
    .concat();
    let init = data.len() as u64;
    let clusters = [
        vec![block_group(2, false), block_group(1, false)], // video BlockGroup without ref: key
        vec![block_group(1, true), simple_block(1, true)],  // first video block references: not key
        vec![simple_block(2, true), block_group(1, false)],
    ];
    let mut expected = Vec::new();
    for (i, c) in clusters.iter().enumerate() {
        if i != 1 {
            expected.push(data.len() as u64);
        }
        data.extend(el_unknown(CLUSTER_ID));
        data.extend(cluster_body(c));
    }
    data.extend(el(&[0x1C, 0x53, 0xBB, 0x6B], &[0xBB; 20])); // Cues ends the last Cluster
    let events = feed_whole(&data);
    assert_eq!(
        events[0],
        ScanEvent::InitComplete {
            len: init,
            segment_size: None
        }
    );
    assert_eq!(joins(&events), expected);
    assert!(!has_error(&events));
    for seed in 1..20 {
        assert_eq!(feed_random(&data, seed, 9), events);
    }
}

#[test]
fn audio_only_every_cluster_is_a_join_point() {
    let mut data = [
        ebml_header(),
        el_unknown(SEGMENT_ID),
        segment_head(&[(1, 2)]),
    ]
    .concat();
    let mut expected = Vec::new();
    for _ in 0..4 {
        expected.push(data.len() as u64);
        data.extend(el_unknown(CLUSTER_ID));
        data.extend(cluster_body(&[
            simple_block(1, false),
            simple_block(1, false),
        ]));
    }
    let events = feed_random(&data, 11, 5);
    assert_eq!(joins(&events), expected);
    assert_eq!(events.len(), 5);
}

#[test]
fn inconsistent_sizes_are_errors() {
    // Child claims more bytes than its known-size parent.
    let tracks = [
        &[0x16, 0x54, 0xAE, 0x6B, 0x84][..],
        &[0xAE, 0x88, 0xD7, 0x81, 0x01],
    ]
    .concat();
    let data = [ebml_header(), el_unknown(SEGMENT_ID), tracks].concat();
    let events = feed_whole(&data);
    assert_eq!(events.len(), 1);
    assert!(has_error(&events));
    // Invalid element ID (first byte 0x00) right after the header.
    let events = feed_whole(&[ebml_header(), vec![0x00, 0x81, 0x00]].concat());
    assert!(matches!(&events[..], [ScanEvent::Error(_)]));
    // Unknown size on a leaf element.
    let events = feed_whole(&[ebml_header(), el_unknown(SEGMENT_ID), el_unknown(&[0xEC])].concat());
    assert!(matches!(&events[..], [ScanEvent::Error(_)]));
    // Chained segment.
    let seg = el(SEGMENT_ID, &[]);
    let events = feed_whole(&[ebml_header(), seg.clone(), ebml_header(), seg].concat());
    assert!(matches!(&events[..], [ScanEvent::Error(_)]));
}

#[test]
fn errors_are_terminal() {
    let mut s = Scanner::new();
    let mut out = Vec::new();
    s.feed(&[ebml_header(), vec![0x00]].concat(), &mut out);
    assert!(s.failed());
    s.feed(&fixture(), &mut out);
    assert_eq!(out.len(), 1);
}

#[test]
fn deeply_nested_elements_are_skipped() {
    let mut inner = el(&[0xD7], &[1]);
    for _ in 0..20 {
        inner = el(&[0xAE], &inner);
    }
    let data = [
        ebml_header(),
        el_unknown(SEGMENT_ID),
        el(&[0x16, 0x54, 0xAE, 0x6B], &inner),
    ]
    .concat();
    let events = feed_whole(&data);
    assert!(
        !has_error(&events),
        "TrackEntry only nests once; the rest is skipped"
    );
}

#[test]
fn huge_element_is_skipped_by_counting() {
    // Void element claiming 2^56 - 2 bytes inside an unknown-size Segment.
    let huge = [0xEC, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE];
    let mut s = Scanner::new();
    let mut out = Vec::new();
    s.feed(
        &[ebml_header(), el_unknown(SEGMENT_ID), huge.to_vec()].concat(),
        &mut out,
    );
    let block = vec![0u8; 1 << 16];
    for _ in 0..64 {
        s.feed(&block, &mut out);
        assert!(s.buffered_bytes() <= MAX_BUFFERED);
    }
    assert!(out.is_empty() && !s.failed());
}

#[test]
fn ffmpeg_known_size_webm() {
    let data = data_file("ffmpeg-vp8-opus-known-size.webm");
    let events = feed_whole(&data);
    let field = SizeField {
        offset: 40,
        width: 8,
    };
    assert_eq!(
        events[0],
        ScanEvent::InitComplete {
            len: 665,
            segment_size: Some(field)
        }
    );
    assert_eq!(joins(&events), [665, 28659]);
    assert_eq!(events.len(), 3);
    for seed in [2, 3, 4] {
        assert_eq!(feed_random(&data, seed, 4096), events);
    }
    // Late joiner: init with the Segment size made unknown + stream from 2 s.
    let mut init = data[..665].to_vec();
    assert!(field.make_unknown(&mut init));
    let joined = [init, data[28659..].to_vec()].concat();
    let events = feed_whole(&joined);
    assert_eq!(
        events[0],
        ScanEvent::InitComplete {
            len: 665,
            segment_size: None
        }
    );
    assert_eq!(joins(&events), [665]);
    assert!(!has_error(&events));
}
