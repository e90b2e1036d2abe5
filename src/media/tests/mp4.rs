use super::*;
use crate::media::Container;

const SYNC: u32 = 0x0200_0000; // sample_depends_on = 2 (I-frame), sync
const NON_SYNC: u32 = 0x0101_0000; // depends on others, non-sync

/// Builds `init + fragments` (each fragment followed by an mdat); returns the
/// stream, the init length and the moof offsets.
fn stream(init: Vec<u8>, fragments: &[Vec<u8>]) -> (Vec<u8>, u64, Vec<u64>) {
    let init_len = init.len() as u64;
    let mut data = init;
    let mut offsets = Vec::new();
    for f in fragments {
        offsets.push(data.len() as u64);
        data.extend(f);
        data.extend(mdat());
    }
    (data, init_len, offsets)
}

fn check(data: &[u8], init_len: u64, expected_joins: &[u64]) {
    let events = feed_whole(data);
    assert_eq!(
        events[0],
        ScanEvent::InitComplete {
            len: init_len,
            segment_size: None
        }
    );
    assert_eq!(joins(&events), expected_joins);
    assert!(!has_error(&events), "{events:?}");
    for seed in 1..10 {
        assert_eq!(feed_random(data, seed, 13), events, "seed {seed}");
    }
}

#[test]
fn trun_first_sample_flags() {
    let init = [ftyp(), moov(&[(1, b"vide")], 0)].concat();
    let frags = [
        moof(&[traf(&[tfhd(1, None), trun(Some(SYNC), None)])]),
        moof(&[traf(&[tfhd(1, None), trun(Some(NON_SYNC), None)])]),
        moof(&[traf(&[tfhd(1, None), trun(Some(SYNC), Some(NON_SYNC))])]),
    ];
    let (data, init_len, offs) = stream(init, &frags);
    check(&data, init_len, &[offs[0], offs[2]]);
}

#[test]
fn trun_per_sample_flags() {
    let init = [ftyp(), moov(&[(1, b"vide")], 0)].concat();
    let frags = [
        moof(&[traf(&[tfhd(1, None), trun(None, Some(NON_SYNC))])]),
        moof(&[traf(&[tfhd(1, None), trun(None, Some(SYNC))])]),
    ];
    let (data, init_len, offs) = stream(init, &frags);
    check(&data, init_len, &[offs[1]]);
}

#[test]
fn tfhd_and_trex_default_flags() {
    // trex says non-sync by default; tfhd overrides per fragment.
    let init = [ftyp(), moov(&[(1, b"vide")], NON_SYNC)].concat();
    let frags = [
        moof(&[traf(&[tfhd(1, Some(SYNC)), trun(None, None)])]),
        moof(&[traf(&[tfhd(1, Some(NON_SYNC)), trun(None, None)])]),
        moof(&[traf(&[tfhd(1, None), trun(None, None)])]), // trex default: non-sync
        moof(&[traf(&[tfhd(1, Some(NON_SYNC)), trun(Some(SYNC), None)])]),
    ];
    let (data, init_len, offs) = stream(init, &frags);
    check(&data, init_len, &[offs[0], offs[3]]);
}

#[test]
fn audio_and_video_trafs_use_the_video_track() {
    let init = [ftyp(), moov(&[(1, b"soun"), (2, b"vide")], 0)].concat();
    let audio = traf(&[tfhd(1, None), trun(Some(SYNC), None)]);
    let frags = [
        moof(&[
            audio.clone(),
            traf(&[tfhd(2, None), trun(Some(NON_SYNC), None)]),
        ]),
        moof(&[
            audio.clone(),
            traf(&[tfhd(2, None), trun(Some(SYNC), None)]),
        ]),
        moof(std::slice::from_ref(&audio)), // no video at all: not a join point
    ];
    let (data, init_len, offs) = stream(init, &frags);
    check(&data, init_len, &[offs[1]]);
}

#[test]
fn audio_only_every_moof_is_a_join_point() {
    let init = [ftyp(), moov(&[(1, b"soun")], NON_SYNC)].concat();
    let f = moof(&[traf(&[tfhd(1, None), trun(None, None)])]);
    let (data, init_len, offs) = stream(init, &[f.clone(), f]);
    check(&data, init_len, &offs);
}

#[test]
fn largesize_boxes() {
    // A 64-bit largesize mdat between fragments and a largesize moof.
    let init = [ftyp(), moov(&[(1, b"vide")], 0)].concat();
    let f = moof(&[traf(&[tfhd(1, None), trun(Some(SYNC), None)])]);
    let large_moof = [
        &1u32.to_be_bytes()[..],
        b"moof",
        &(f.len() as u64 + 8).to_be_bytes(),
        &f[8..],
    ]
    .concat();
    let large_mdat = [
        &1u32.to_be_bytes()[..],
        b"mdat",
        &(16u64 + 100).to_be_bytes(),
        &[7; 100],
    ]
    .concat();
    let mut data = [init.clone(), f, large_mdat].concat();
    let second = data.len() as u64;
    data.extend(large_moof);
    check(&data, init.len() as u64, &[init.len() as u64, second]);
}

#[test]
fn huge_largesize_mdat_is_skipped() {
    let init = [ftyp(), moov(&[(1, b"vide")], 0)].concat();
    let huge = [
        &1u32.to_be_bytes()[..],
        b"mdat",
        &(1u64 << 60).to_be_bytes(),
    ]
    .concat();
    let mut s = Scanner::new();
    let mut out = Vec::new();
    s.feed(&[init, huge].concat(), &mut out);
    for _ in 0..32 {
        s.feed(&[0u8; 65536], &mut out);
    }
    assert_eq!(s.container(), Container::Mp4);
    assert!(out.is_empty() && !s.failed() && s.buffered_bytes() <= MAX_BUFFERED);
}

#[test]
fn bad_boxes_are_errors() {
    let init = [ftyp(), moov(&[(1, b"vide")], 0)].concat();
    // Box size < 8.
    let events = feed_whole(&[init.clone(), vec![0, 0, 0, 4, b'f', b'r', b'e', b'e']].concat());
    assert!(matches!(&events[..], [ScanEvent::Error(_)]));
    // Child box larger than its parent.
    let bad = [
        &16u32.to_be_bytes()[..],
        b"moov",
        &100u32.to_be_bytes(),
        b"trak",
    ]
    .concat();
    let events = feed_whole(&[ftyp(), bad].concat());
    assert!(matches!(&events[..], [ScanEvent::Error(_)]));
    // Truncated trun (claims first_sample_flags but too short).
    let short = full_box(b"trun", 0x004, &1u32.to_be_bytes());
    let events = feed_whole(&[init, moof(&[traf(&[tfhd(1, None), short])])].concat());
    assert!(matches!(
        &events[..],
        [ScanEvent::InitComplete { .. }, ScanEvent::Error(_)]
    ));
}

#[test]
fn size_zero_box_ends_scanning_quietly() {
    let init = [ftyp(), moov(&[(1, b"soun")], 0)].concat();
    let data = [init, vec![0, 0, 0, 0], b"mdat".to_vec(), vec![0; 5000]].concat();
    assert!(feed_whole(&data).is_empty());
}

#[test]
fn opaque_input_gives_no_events() {
    for data in [
        b"hello world, this is not media".to_vec(),
        vec![0x47; 188 * 20],
        vec![0; 9],
    ] {
        let mut s = Scanner::new();
        let mut out = Vec::new();
        s.feed(&data, &mut out);
        assert_eq!(s.container(), Container::Opaque);
        assert!(out.is_empty() && !s.failed());
    }
    let mut s = Scanner::new();
    s.feed(&[0x1A, 0x45], &mut Vec::new());
    assert_eq!(s.container(), Container::Unknown);
}

#[test]
fn ffmpeg_fragmented_mp4() {
    let data = data_file("ffmpeg-h264-aac-frag.mp4");
    let events = feed_whole(&data);
    assert_eq!(
        events[0],
        ScanEvent::InitComplete {
            len: 1277,
            segment_size: None
        }
    );
    assert_eq!(joins(&events), [1277, 23828]);
    assert_eq!(events.len(), 3);
    for seed in [2, 3, 4] {
        assert_eq!(feed_random(&data, seed, 4096), events);
    }
}
