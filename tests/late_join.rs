//! Late joiners decode (docs/PROTOCOL.md §2.7 improvement) with real media made by ffmpeg,
//! published in chunks cut at random offsets, with a
//! cache small enough to force eviction. Needs Debian's ffmpeg (installed by
//! .ci/run); fails loudly without it.

mod common;

use common::media::*;
use common::*;

async fn check_media(name: &str, media: Vec<u8>, video: bool) {
    // The real process: its resident memory is checked.
    let server = Server::process(&[
        ("GOP_CACHE_SIZE_MB", "1"),
        ("MAX_IP_CONCURRENT_CONNECTIONS", "64"),
    ]);
    assert!(
        media.len() > 2 << 20,
        "{name}: media must overflow the 1 MiB cache ({} bytes)",
        media.len()
    );
    let rss_before = server.rss_kib();
    let (early, late) = publish_with_joiners(&server, &server, name, &media, "receive").await;
    assert!(
        early == media,
        "{name}: a receiver present from the start gets the exact stream"
    );
    assert!(late.len() >= 8, "{name}: joined {} times", late.len());
    let mut shorter = 0;
    for (i, stream) in late.iter().enumerate() {
        assert!(!stream.is_empty(), "{name}: joiner {i} got nothing");
        if stream.len() < media.len() {
            shorter += 1;
        }
        let errors = decode_errors(stream);
        assert!(
            errors.is_empty(),
            "{name}: joiner {i} ({} bytes) decode errors:\n{errors}",
            stream.len()
        );
        if video {
            assert!(
                first_frame_is_key(stream),
                "{name}: joiner {i} does not start at a keyframe"
            );
        }
    }
    assert!(
        shorter >= 4,
        "{name}: eviction should have cut the history of most joiners"
    );
    let rss_after = server.rss_kib();
    assert!(
        rss_after < rss_before + 48 * 1024,
        "{name}: RSS {rss_before} -> {rss_after} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webm_vp8_opus() {
    check_media("vp8", webm_video("libvpx"), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webm_vp9_opus() {
    check_media("vp9", webm_video("libvpx-vp9"), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webm_audio_only() {
    let media = encode(
        150,
        &[
            "-c:a",
            "libopus",
            "-b:a",
            "128k",
            "-f",
            "webm",
            "-cluster_time_limit",
            "1000",
        ],
        false,
    );
    check_media("opus", media, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_mp4_h264_aac() {
    check_media("h264", fragmented_mp4(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_recording_with_clear_cache_then_late_joiners() {
    let media = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/chromium-mediarecorder-vp8-opus.webm"
    ))
    .expect("the Chromium fixture in tests/fixtures");
    let server = Server::start(&[("MAX_IP_CONCURRENT_CONNECTIONS", "64")]);
    // The encoder takes the whole stream and frees the history; later joiners get init + latest group.
    let (encoder, late) =
        publish_with_joiners(&server, &server, "chromium", &media, "receive").await;
    assert!(encoder == media);
    let mut publisher = ws(&server.url("/chrome2/k/publish")).await;
    let chunks = cut(&media, 3);
    // Past the recording's second keyframe (at 76 % of its bytes), so the
    // joiner's latest group is not the whole stream.
    let half = chunks.len() * 7 / 8;
    for chunk in &chunks[..half] {
        send(&mut publisher, chunk.clone()).await;
    }
    let mut clearing = ws(&server.url("/chrome2/k/receive-clear-cache")).await;
    let mut got = Vec::new();
    while got.len() < chunks[..half].iter().map(Vec::len).sum::<usize>() {
        got.extend(next_binary(&mut clearing).await);
    }
    let started = server.metric("ws_stream_receivers_started_total") as usize;
    let joiner = ws(&server.url("/chrome2/k/receive")).await;
    let joiner = tokio::spawn(collect(joiner));
    let probe = ws(&server.url("/chrome2/k/probe")).await;
    let probe = tokio::spawn(collect(probe));
    server.wait_started(started + 2).await;
    for chunk in &chunks[half..] {
        send(&mut publisher, chunk.clone()).await;
    }
    close(publisher).await;
    got.extend(collect(clearing).await);
    assert!(got == media, "the clearing receiver gets the whole stream");
    let joined = joiner.await.unwrap();
    assert!(joined.len() < media.len());
    assert_eq!(decode_errors(&joined), "");
    assert!(first_frame_is_key(&joined));
    // The probe's one message is init + media from the latest join point: ffprobe sees the video.
    let probed = probe.await.unwrap();
    let (_, out, _) = run_tool(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "csv=p=0",
            "-i",
            "-",
        ],
        &probed,
    );
    assert!(
        String::from_utf8_lossy(&out).contains("vp8,640,480"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    for stream in late {
        assert_eq!(decode_errors(&stream), "");
    }
}
