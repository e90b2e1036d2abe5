//! The `media` scenario: a real recording (WebM or fragmented MP4) cut into
//! chunks and published at a given rate, K healthy receivers that must get it
//! byte for byte, and S throttled receivers that read slower than the stream.
//! A throttled receiver of an understood stream must be moved forward to a
//! join point (a Cluster, a `moof`), never cut: what it got is checked to be
//! pieces of the recording in order, each jump landing on a join point.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use crate::client::{self, Event, Reader};
use crate::target::Target;

/// A throttled receiver's socket buffer: small, so the server sees it lag soon.
const SLOW_RCVBUF: u32 = 16 * 1024;
/// How long receivers may take after the last chunk to see the close.
const DRAIN: Duration = Duration::from_secs(30);
/// Bytes compared to find where a jump lands in the recording.
const PROBE: usize = 64;
const WEBM_CLUSTER: [u8; 4] = [0x1F, 0x43, 0xB6, 0x75];
/// How far back a jump is looked for behind the bytes both sides have alike.
const ALIKE: usize = 64;

/// What the scenario publishes and how the throttled receivers read.
#[derive(Debug, Clone)]
pub(crate) struct MediaPlan {
    pub media: Vec<u8>,
    pub chunk: usize,
    pub rate_bps: f64,
    pub healthy: usize,
    pub slow: usize,
    pub slow_rate_bps: f64,
    pub tag: String,
}

/// One jump in a throttled receiver's bytes: it got the recording up to `from`,
/// then from `to` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Jump {
    pub from: usize,
    pub to: usize,
}

/// How a throttled receiver's bytes map onto the recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mapping {
    /// Pieces of the recording in order, with these jumps between them.
    Pieces(Vec<Jump>),
    /// Bytes at this offset of what it got are nowhere later in the recording.
    Foreign(usize),
}

/// Maps `got` onto `media`: equal runs, and where they differ, the next place in
/// `media` where the following bytes are found.
pub(crate) fn map_onto(media: &[u8], got: &[u8]) -> Mapping {
    let (mut at, mut i) = (0usize, 0usize);
    let mut jumps = Vec::new();
    while i < got.len() {
        let same = media[at.min(media.len())..]
            .iter()
            .zip(&got[i..])
            .take_while(|(a, b)| a == b)
            .count();
        at += same;
        i += same;
        if i == got.len() {
            break;
        }
        let probe = &got[i..(i + PROBE).min(got.len())];
        let Some(found) = media[at..].windows(probe.len()).position(|w| w == probe) else {
            return Mapping::Foreign(i);
        };
        // Both sides of a jump may start alike (a Cluster's ID, its size): the jump
        // is placed at the join points the equal run went past, when there are such.
        let to = at + found;
        let back = (0..=same.min(ALIKE))
            .find(|k| is_join(media, at - k) && is_join(media, to - k))
            .unwrap_or(0);
        jumps.push(Jump {
            from: at - back,
            to: to - back,
        });
        at = to;
    }
    Mapping::Pieces(jumps)
}

/// Whether `media` has a join point (a WebM Cluster, an MP4 `moof`) at `offset`.
pub(crate) fn is_join(media: &[u8], offset: usize) -> bool {
    let at = |range: std::ops::Range<usize>| media.get(range);
    at(offset..offset + 4) == Some(&WEBM_CLUSTER[..])
        || at(offset + 4..offset + 8) == Some(&b"moof"[..])
}

/// How one throttled receiver ended.
#[derive(Debug, Clone)]
pub(crate) struct SlowEnd {
    pub bytes: usize,
    pub code: Option<u16>,
    pub mapping: Mapping,
}

impl SlowEnd {
    fn skipped(&self) -> usize {
        match &self.mapping {
            Mapping::Pieces(jumps) => jumps.iter().map(|j| j.to - j.from).sum(),
            Mapping::Foreign(_) => 0,
        }
    }

    /// Every jump leaves and lands on a join point.
    fn aligned(&self, media: &[u8]) -> bool {
        match &self.mapping {
            Mapping::Pieces(jumps) => jumps
                .iter()
                .all(|j| is_join(media, j.from) && is_join(media, j.to)),
            Mapping::Foreign(_) => false,
        }
    }
}

/// Runs the plan once against `target`; returns the error count (printed).
pub(crate) async fn run(target: &Target, plan: &MediaPlan) -> Result<u64> {
    let ep = &target.endpoint;
    if ep.play {
        bail!("media runs with WebSocket receivers only (--receive-kind receive)");
    }
    let path = |kind: &str| format!("/{}/benchkey/{kind}", plan.tag);
    let mut healthy = JoinSet::new();
    for _ in 0..plan.healthy {
        let s = client::connect(target.receiver_endpoint(0), &path("receive"), None).await?;
        healthy.spawn(read_all(s, None));
    }
    let media: Arc<[u8]> = plan.media.clone().into();
    let mut slow = JoinSet::new();
    for i in 0..plan.slow {
        let ep = target.receiver_endpoint(i);
        let s = client::connect(ep, &path("receive"), Some(SLOW_RCVBUF)).await?;
        slow.spawn(read_all(s, Some((plan.slow_rate_bps, media.clone()))));
    }
    // Receivers registered before the first chunk: each must get the stream from its start.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let publisher = client::connect(ep, &path("publish"), None).await?;
    let started = Instant::now();
    publish(publisher, plan, ep.masked).await?;
    let published_in = started.elapsed();
    let mut errors = 0u64;
    let mut exact = 0usize;
    while let Some(joined) = tokio::time::timeout(DRAIN, healthy.join_next())
        .await
        .context("a healthy receiver did not finish")?
    {
        let (got, code) = joined.context("healthy receiver task")??;
        if got == plan.media && code == Some(1000) {
            exact += 1;
        } else {
            errors += 1;
            eprintln!(
                "media: a healthy receiver got {} of {} bytes (exact: {}), close {code:?}",
                got.len(),
                plan.media.len(),
                got == plan.media
            );
        }
    }
    let mut ends = Vec::new();
    while let Some(joined) = tokio::time::timeout(DRAIN, slow.join_next())
        .await
        .context("a throttled receiver did not finish")?
    {
        let (got, code) = joined.context("throttled receiver task")??;
        let mapping = map_onto(&plan.media, &got);
        ends.push(SlowEnd {
            bytes: got.len(),
            code,
            mapping,
        });
    }
    println!(
        "\n#### media: {} B of recording in {} B chunks at {:.3} Mbit/s (published in {:.1} s); {} healthy, {} throttled to {:.3} Mbit/s\n",
        plan.media.len(),
        plan.chunk,
        plan.rate_bps / 1e6,
        published_in.as_secs_f64(),
        plan.healthy,
        plan.slow,
        plan.slow_rate_bps / 1e6
    );
    println!(
        "healthy receivers with the exact recording and a 1000 close: {exact} of {}\n",
        plan.healthy
    );
    println!("| throttled receiver | bytes got | skips | bytes skipped | every skip on a join point | close |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (i, end) in ends.iter().enumerate() {
        let skips = match &end.mapping {
            Mapping::Pieces(jumps) => jumps.len().to_string(),
            Mapping::Foreign(at) => format!("foreign bytes at {at}"),
        };
        let aligned = end.aligned(&plan.media);
        println!(
            "| {i} | {} | {skips} | {} | {} | {} |",
            end.bytes,
            end.skipped(),
            if aligned { "yes" } else { "no" },
            end.code.map_or("none".into(), |c| c.to_string())
        );
        // Cut (1008 or no close) or a skip into the middle of a group: not what the server promises.
        if end.code != Some(1000) || !aligned {
            errors += 1;
        }
    }
    println!("\nerrors in this run: {errors}");
    Ok(errors)
}

/// Sends the recording in `plan.chunk` pieces paced to `plan.rate_bps`, then closes.
async fn publish(stream: tokio::net::TcpStream, plan: &MediaPlan, masked: bool) -> Result<()> {
    let (_read, mut write) = stream.into_split();
    let interval = Duration::from_secs_f64(plan.chunk as f64 * 8.0 / plan.rate_bps);
    let start = tokio::time::Instant::now();
    let key = [0x5a, 0x13, 0xc7, 0x2e];
    for (n, piece) in plan.media.chunks(plan.chunk.max(1)).enumerate() {
        tokio::time::sleep_until(start + interval.mul_f64(n as f64)).await;
        let mut frame = client::frame_head(0x2, piece.len(), masked.then_some(key));
        let body = frame.len();
        frame.extend_from_slice(piece);
        if masked {
            for (i, b) in frame[body..].iter_mut().enumerate() {
                *b ^= key[i % 4];
            }
        }
        write.write_all(&frame).await?;
    }
    let close = client::frame_head(0x8, 2, masked.then_some(key));
    let mut frame = close;
    let code = 1000u16.to_be_bytes();
    frame.extend(
        code.iter()
            .enumerate()
            .map(|(i, b)| if masked { b ^ key[i] } else { *b }),
    );
    write.write_all(&frame).await?;
    Ok(())
}

/// Reads every message until the close. A throttled reader (`Some((rate, media))`)
/// sleeps between messages so it never reads faster than `rate` bits per second,
/// until what it gets stops being the recording as published (the server moved it
/// forward): from then on it reads at full speed, as a player that caught up.
async fn read_all(
    stream: tokio::net::TcpStream,
    throttle: Option<(f64, Arc<[u8]>)>,
) -> Result<(Vec<u8>, Option<u16>)> {
    let (mut reader, _write) = Reader::new(stream, 64 << 20);
    let started = tokio::time::Instant::now();
    let mut got = Vec::new();
    let mut throttle = throttle;
    loop {
        let before = got.len();
        let mut closed = false;
        let code = reader
            .run(|ev| {
                match ev {
                    Event::Binary(data) => got.extend_from_slice(data),
                    Event::Close => closed = true,
                }
                false
            })
            .await;
        match code {
            Ok(code) if closed => return Ok((got, code)),
            Ok(_) => {}
            // A connection dropped without a close frame counts as cut.
            Err(_) => return Ok((got, None)),
        }
        if let Some((_, media)) = &throttle {
            if media.get(before..got.len()) != Some(&got[before..]) {
                throttle = None;
            }
        }
        if let Some((bps, _)) = &throttle {
            let due = Duration::from_secs_f64(got.len() as f64 * 8.0 / bps);
            tokio::time::sleep_until(started + due).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webm_like() -> Vec<u8> {
        let mut m = b"header..".to_vec();
        for c in 0..4u8 {
            m.extend_from_slice(&WEBM_CLUSTER);
            m.extend((0..200).map(|i| (i as u8).wrapping_mul(31).wrapping_add(c)));
        }
        m
    }

    #[test]
    fn the_whole_recording_maps_without_jumps() {
        let m = webm_like();
        assert_eq!(map_onto(&m, &m), Mapping::Pieces(vec![]));
        assert_eq!(map_onto(&m, &m[..100]), Mapping::Pieces(vec![]));
    }

    #[test]
    fn a_skip_between_clusters_is_one_aligned_jump() {
        let m = webm_like();
        let second = 8 + 204;
        let fourth = 8 + 3 * 204;
        let mut got = m[..second].to_vec();
        got.extend_from_slice(&m[fourth..]);
        let jumps = vec![Jump {
            from: second,
            to: fourth,
        }];
        assert_eq!(map_onto(&m, &got), Mapping::Pieces(jumps));
        let end = SlowEnd {
            bytes: got.len(),
            code: Some(1000),
            mapping: map_onto(&m, &got),
        };
        assert!(end.aligned(&m));
        assert_eq!(end.skipped(), fourth - second);
    }

    #[test]
    fn a_cut_into_the_middle_of_a_cluster_is_not_aligned() {
        let m = webm_like();
        let mut got = m[..300].to_vec();
        got.extend_from_slice(&m[700..]);
        let end = SlowEnd {
            bytes: got.len(),
            code: Some(1000),
            mapping: map_onto(&m, &got),
        };
        assert!(!end.aligned(&m));
    }

    #[test]
    fn bytes_that_are_not_in_the_recording_are_foreign() {
        let m = webm_like();
        let mut got = m[..50].to_vec();
        got.extend_from_slice(&[0xEE; 80]);
        assert_eq!(map_onto(&m, &got), Mapping::Foreign(50));
    }

    #[test]
    fn moof_boxes_are_join_points() {
        let m = b"\0\0\0\x10moofxxxxxxxx".to_vec();
        assert!(is_join(&m, 0));
        assert!(!is_join(&m, 1));
    }
}
