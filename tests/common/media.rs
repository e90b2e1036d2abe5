//! Real media for the late-join tests: ffmpeg encodes it, chunks are cut at
//! random offsets, receivers join while it is published, ffmpeg/ffprobe judge
//! what they got. The tools are required: a test fails loudly without them.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::*;

/// Runs a tool with `input` on stdin; returns (success, stdout, stderr).
pub fn run_tool(tool: &str, args: &[&str], input: &[u8]) -> (bool, Vec<u8>, String) {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{tool} is required for this test (apt-get install ffmpeg): {e}")
        });
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("tool output");
    let _ = writer.join();
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Encodes `seconds` of test video/audio with ffmpeg to stdout.
pub fn encode(seconds: u32, output: &[&str], video: bool) -> Vec<u8> {
    let duration = seconds.to_string();
    let mut args = vec!["-v", "error", "-nostdin"];
    if video {
        args.extend(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"]);
    }
    args.extend([
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        &duration,
    ]);
    args.extend_from_slice(output);
    args.push("-");
    let (ok, out, err) = run_tool("ffmpeg", &args, &[]);
    assert!(ok && !out.is_empty(), "ffmpeg failed: {err}");
    out
}

/// ffmpeg's decode errors for a received stream (empty = clean).
pub fn decode_errors(stream: &[u8]) -> String {
    let (ok, _, err) = run_tool(
        "ffmpeg",
        &["-v", "error", "-nostdin", "-i", "-", "-f", "null", "-"],
        stream,
    );
    if ok {
        err
    } else {
        format!("ffmpeg failed: {err}")
    }
}

/// Whether the first decoded video frame is a keyframe.
pub fn first_frame_is_key(stream: &[u8]) -> bool {
    let args = [
        "-v",
        "error",
        "-select_streams",
        "v:0",
        "-show_entries",
        "frame=key_frame",
        "-read_intervals",
        "%+#1",
        "-of",
        "csv=p=0",
        "-i",
        "-",
    ];
    let (_, out, _) = run_tool("ffprobe", &args, stream);
    let text = String::from_utf8_lossy(&out);
    let first = text.lines().map(str::trim).find(|l| !l.is_empty());
    first.and_then(|l| l.split(',').next()) == Some("1")
}

/// Cuts `data` at pseudo-random offsets (1 B … 32 KiB).
pub fn cut(data: &[u8], seed: u64) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    let mut at = 0;
    let mut i = seed;
    while at < data.len() {
        let r = payload(i, 4);
        let len = 1 + (u32::from_be_bytes([r[0], r[1], r[2], r[3]]) as usize % (32 * 1024));
        let end = (at + len).min(data.len());
        chunks.push(data[at..end].to_vec());
        at = end;
        i += 1;
    }
    chunks
}

/// Receives everything until the close.
pub async fn collect(r: Ws) -> Vec<u8> {
    collect_with_code(r).await.0
}

/// Receives whole messages until the close: (bytes, close code).
pub async fn collect_with_code(mut r: Ws) -> (Vec<u8>, Option<u16>) {
    let mut all = Vec::new();
    loop {
        match next_within(&mut r, Duration::from_secs(30))
            .await
            .expect("receiver stalled")
        {
            Got::Binary(b) => all.extend(b),
            Got::Text(_) => {}
            Got::Closed(code) => return (all, code),
        }
    }
}

/// Publishes `media` on `origin` (paced over about 2.5 s) while receivers of
/// `server` (the same one, or an edge of it) join at many moments; returns
/// (early receiver's bytes, late receivers' bytes).
pub async fn publish_with_joiners(
    origin: &Server,
    server: &Server,
    channel: &str,
    media: &[u8],
    kind: &str,
) -> (Vec<u8>, Vec<Vec<u8>>) {
    let started_before = server.metric("ws_stream_receivers_started_total") as usize;
    let early = ws(&server.url(&format!("/{channel}/k/receive"))).await;
    server.wait_waiting(1).await;
    // An edge's upstream waits at the origin too: the early receiver misses nothing.
    origin.wait_waiting(1).await;
    let early = tokio::spawn(collect(early));
    let mut publisher = ws(&origin.url(&format!("/{channel}/k/publish"))).await;
    let chunks = cut(media, channel.len() as u64 * 7919);
    let pause = Duration::from_micros(2_500_000 / chunks.len() as u64);
    let joins_every = chunks.len() / 9;
    let mut late = Vec::new();
    for (i, chunk) in chunks.into_iter().enumerate() {
        send(&mut publisher, chunk).await;
        tokio::time::sleep(pause).await;
        if i > 0 && i % joins_every == 0 {
            // Started before the next chunk: a joiner that connected only after
            // the publisher's end would wait for a next publisher instead.
            let joiner = ws(&server.url(&format!("/{channel}/k/{kind}"))).await;
            late.push(tokio::spawn(collect(joiner)));
            // The early receiver and every joiner so far.
            server.wait_started(started_before + 1 + late.len()).await;
        }
    }
    close(publisher).await;
    let early = early.await.expect("early receiver");
    let mut late_bytes = Vec::new();
    for l in late {
        late_bytes.push(l.await.expect("late receiver"));
    }
    (early, late_bytes)
}

/// 20 s of WebM video with `codec` + Opus, a keyframe every 1.6 s, about 5 MB.
pub fn webm_video(codec: &str) -> Vec<u8> {
    webm_encoded(codec, 20, &["-b:v", "2M"])
}

/// `seconds` of WebM video with `codec` (rate options `rate`) + Opus, a keyframe every 1.6 s.
pub fn webm_encoded(codec: &str, seconds: u32, rate: &[&str]) -> Vec<u8> {
    let mut args = vec!["-c:v", codec, "-deadline", "realtime", "-cpu-used", "8"];
    args.extend_from_slice(rate);
    args.extend(["-g", "40", "-c:a", "libopus", "-f", "webm"]);
    encode(seconds, &args, true)
}

/// 12 s of fragmented MP4 (H.264 + AAC), a keyframe every 1.6 s, about 3 MB.
pub fn fragmented_mp4() -> Vec<u8> {
    fragmented_mp4_of(12)
}

/// `seconds` of fragmented MP4 (H.264 + AAC at 2 Mbit/s), a keyframe every 1.6 s.
pub fn fragmented_mp4_of(seconds: u32) -> Vec<u8> {
    encode(
        seconds,
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-b:v",
            "2M",
            "-g",
            "40",
            "-c:a",
            "aac",
            "-movflags",
            "frag_keyframe+empty_moov+default_base_moof",
            "-f",
            "mp4",
        ],
        true,
    )
}
