//! Tests for the media scanner: helpers to feed streams and build synthetic
//! WebM / fMP4 streams.

mod mp4;
mod props;
mod webm;

use super::{ScanEvent, Scanner, MAX_BUFFERED};

/// Real Chromium MediaRecorder recording, made by `tests/fixtures/regenerate.sh`
/// (VP8 + Opus, unknown-size Segment and Clusters, 22 Clusters, video
/// keyframes at 0 s and 8.50 s in the Clusters at 0 s and 8.48 s).
pub(super) const CHROMIUM_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/chromium-mediarecorder-vp8-opus.webm"
);

fn fixture() -> Vec<u8> {
    std::fs::read(CHROMIUM_FIXTURE).expect("read Chromium fixture")
}

/// Feeds `data` in the given chunk sizes (cycled), checking the memory bounds
/// after every chunk; returns all events.
fn feed_sizes(data: &[u8], sizes: &[usize]) -> Vec<ScanEvent> {
    let mut s = Scanner::new();
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(rest.len())
            .clamp(1, rest.len());
        s.feed(&rest[..n], &mut out);
        rest = &rest[n..];
        i += 1;
        assert!(s.buffered_bytes() <= MAX_BUFFERED);
        assert!(s.nesting_depth() <= super::walker::MAX_DEPTH);
    }
    assert_eq!(s.bytes_seen(), data.len() as u64);
    out
}

fn feed_whole(data: &[u8]) -> Vec<ScanEvent> {
    feed_sizes(data, &[data.len()])
}

/// Feeds `data` in pseudo-random chunk sizes in `1..=max` (xorshift from `seed`).
fn feed_random(data: &[u8], seed: u64, max: usize) -> Vec<ScanEvent> {
    let mut x = seed | 1;
    let sizes: Vec<usize> = (0..512)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % max as u64) as usize + 1
        })
        .collect();
    feed_sizes(data, &sizes)
}

fn joins(events: &[ScanEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            ScanEvent::JoinPoint { offset } => Some(*offset),
            _ => None,
        })
        .collect()
}

fn has_error(events: &[ScanEvent]) -> bool {
    events.iter().any(|e| matches!(e, ScanEvent::Error(_)))
}

// ---- EBML builders ----

/// Minimal-width EBML size vint for `n`.
fn ebml_size(n: u64) -> Vec<u8> {
    let w = (1..=8u32).find(|&w| n < (1u64 << (7 * w)) - 1).unwrap_or(8);
    let v = n | (1u64 << (7 * w));
    v.to_be_bytes()[8 - w as usize..].to_vec()
}

fn el(id: &[u8], body: &[u8]) -> Vec<u8> {
    [id, &ebml_size(body.len() as u64), body].concat()
}

/// Element header with the 8-byte unknown size (as Chromium writes it).
fn el_unknown(id: &[u8]) -> Vec<u8> {
    [id, &[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF][..]].concat()
}

const SEGMENT_ID: &[u8] = &[0x18, 0x53, 0x80, 0x67];
const CLUSTER_ID: &[u8] = &[0x1F, 0x43, 0xB6, 0x75];

fn ebml_header() -> Vec<u8> {
    el(&[0x1A, 0x45, 0xDF, 0xA3], &el(&[0x42, 0x82], b"webm"))
}

/// Info + Tracks with `(number, type)` entries.
fn segment_head(tracks: &[(u8, u8)]) -> Vec<u8> {
    let info = el(
        &[0x15, 0x49, 0xA9, 0x66],
        &el(&[0x2A, 0xD7, 0xB1], &[0x0F, 0x42, 0x40]),
    );
    let entries: Vec<u8> = tracks
        .iter()
        .flat_map(|&(n, t)| el(&[0xAE], &[el(&[0xD7], &[n]), el(&[0x83], &[t])].concat()))
        .collect();
    [info, el(&[0x16, 0x54, 0xAE, 0x6B], &entries)].concat()
}

fn simple_block(track: u8, key: bool) -> Vec<u8> {
    let flags = if key { 0x80 } else { 0x00 };
    el(
        &[0xA3],
        &[&[0x80 | track, 0, 0, flags][..], &[0x55; 40]].concat(),
    )
}

fn block_group(track: u8, reference: bool) -> Vec<u8> {
    let block = el(
        &[0xA1],
        &[&[0x80 | track, 0, 0, 0][..], &[0x66; 30]].concat(),
    );
    let refb = if reference {
        el(&[0xFB], &[0xFF])
    } else {
        Vec::new()
    };
    el(&[0xA0], &[block, refb].concat())
}

fn cluster_body(blocks: &[Vec<u8>]) -> Vec<u8> {
    [el(&[0xE7], &[0]), blocks.concat()].concat()
}

// ---- ISO-BMFF builders ----

fn bx(typ: &[u8; 4], body: &[u8]) -> Vec<u8> {
    [&(body.len() as u32 + 8).to_be_bytes()[..], typ, body].concat()
}

fn full_box(typ: &[u8; 4], flags: u32, body: &[u8]) -> Vec<u8> {
    bx(typ, &[&flags.to_be_bytes()[..], body].concat())
}

fn ftyp() -> Vec<u8> {
    bx(b"ftyp", b"iso5\0\0\0\x01iso5dash")
}

/// moov with `(track_id, handler)` traks and a trex per track (`trex_flags`).
fn moov(tracks: &[(u32, &[u8; 4])], trex_flags: u32) -> Vec<u8> {
    let mut body = full_box(b"mvhd", 0, &[0; 96]);
    for &(id, handler) in tracks {
        let tkhd = full_box(
            b"tkhd",
            3,
            &[&[0; 8][..], &id.to_be_bytes(), &[0; 68]].concat(),
        );
        let hdlr = full_box(b"hdlr", 0, &[&[0; 4][..], handler, &[0; 13]].concat());
        let mdia = bx(b"mdia", &[full_box(b"mdhd", 0, &[0; 20]), hdlr].concat());
        body.extend(bx(b"trak", &[tkhd, mdia].concat()));
    }
    let trex: Vec<u8> = tracks
        .iter()
        .flat_map(|&(id, _)| {
            let fields = [id, 1, 0, 0, trex_flags].map(u32::to_be_bytes).concat();
            full_box(b"trex", 0, &fields)
        })
        .collect();
    body.extend(bx(b"mvex", &trex));
    bx(b"moov", &body)
}

fn tfhd(track: u32, default_flags: Option<u32>) -> Vec<u8> {
    match default_flags {
        // base-data-offset (0x01) and default-sample-flags (0x20) present
        Some(f) => full_box(
            b"tfhd",
            0x21,
            &[&track.to_be_bytes()[..], &[0; 8], &f.to_be_bytes()].concat(),
        ),
        None => full_box(b"tfhd", 0x02_0000, &track.to_be_bytes()),
    }
}

/// trun with 3 samples; `first` = first_sample_flags (flag 0x004),
/// otherwise `per_sample` = per-sample flags (flag 0x400) of every sample.
fn trun(first: Option<u32>, per_sample: Option<u32>) -> Vec<u8> {
    let mut flags = 0x001 | 0x200;
    let mut body = [3u32, 0].map(u32::to_be_bytes).concat();
    if let Some(f) = first {
        flags |= 0x004;
        body.extend(f.to_be_bytes());
    }
    flags |= if per_sample.is_some() { 0x400 } else { 0 };
    for _ in 0..3 {
        body.extend(100u32.to_be_bytes());
        if let Some(f) = per_sample {
            body.extend(f.to_be_bytes());
        }
    }
    full_box(b"trun", flags, &body)
}

fn moof(trafs: &[Vec<u8>]) -> Vec<u8> {
    let mfhd = full_box(b"mfhd", 0, &1u32.to_be_bytes());
    bx(b"moof", &[mfhd, trafs.concat()].concat())
}

fn traf(parts: &[Vec<u8>]) -> Vec<u8> {
    bx(b"traf", &parts.concat())
}

fn mdat() -> Vec<u8> {
    bx(b"mdat", &[0xAB; 300])
}

/// Small ffmpeg-generated fixtures (see tests/fixtures/README.md).
fn data_file(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(path).expect("read a fixture in tests/fixtures")
}
