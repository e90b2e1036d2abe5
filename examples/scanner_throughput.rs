//! Throughput of the container scanner, which sits on the publisher's path.
//!
//! `cargo run --release --example scanner_throughput`. Prints MB/s for the
//! Chromium recording in `tests/fixtures/` and for a worst case where every
//! byte is element-header parsing.

use std::time::Instant;

use ws_stream_server::media::{ScanEvent, Scanner};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/chromium-mediarecorder-vp8-opus.webm"
);

/// Feeds `data` `reps` times in 64 KiB chunks; returns MB/s and join points per pass.
fn measure(data: &[u8], reps: usize) -> (f64, usize) {
    let start = Instant::now();
    let mut joins = 0;
    for _ in 0..reps {
        let mut scanner = Scanner::new();
        let mut events = Vec::new();
        for chunk in data.chunks(64 * 1024) {
            scanner.feed(std::hint::black_box(chunk), &mut events);
        }
        joins = events
            .iter()
            .filter(|e| matches!(e, ScanEvent::JoinPoint { .. }))
            .count();
    }
    let mbs = (data.len() * reps) as f64 / start.elapsed().as_secs_f64() / 1e6;
    (mbs, joins)
}

fn main() -> std::io::Result<()> {
    let fixture = std::fs::read(FIXTURE)?;
    let mut runs: Vec<f64> = (0..5).map(|_| measure(&fixture, 2000).0).collect();
    runs.sort_by(f64::total_cmp);
    println!(
        "Chromium recording x2000, 64 KiB chunks: median {:.0} MB/s (join points per pass: {})",
        runs[2],
        measure(&fixture, 1).1
    );
    // EBML header, unknown-size Segment, then nothing but 2-byte Void elements.
    let mut dense = vec![
        0x1A, 0x45, 0xDF, 0xA3, 0x87, 0x42, 0x82, 0x84, b'w', b'e', b'b', b'm',
    ];
    dense.extend_from_slice(&[
        0x18, 0x53, 0x80, 0x67, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    ]);
    dense.extend([0xEC, 0x80].repeat(8 << 20));
    let mut runs: Vec<f64> = (0..5).map(|_| measure(&dense, 1).0).collect();
    runs.sort_by(f64::total_cmp);
    println!(
        "16 MiB of 2-byte Void elements (worst case): median {:.0} MB/s",
        runs[2]
    );
    Ok(())
}
