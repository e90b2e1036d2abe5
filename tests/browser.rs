//! End to end through a real browser: headless Chromium with a fake camera
//! publishes through the built-in page, a second window plays the channel
//! with MSE, `probe` feeds ffprobe, `receive-clear-cache` feeds an ffmpeg HLS
//! encoder, and stopping the publisher ends every receiver.
//!
//! Needs Debian's `chromium`, `chromium-driver` and `ffmpeg` (see `.ci/run`);
//! without them the test fails. Screenshots land in `target/test-artifacts/`.
//!
//! The ignored `record_chromium_fixture` is the generator of
//! `tests/fixtures/chromium-mediarecorder-vp8-opus.webm` (run by
//! `tests/fixtures/regenerate.sh`): the same page publishes the fake camera
//! and microphone while a receiver that was waiting before it takes the
//! stream from its first byte, as relayed, into the file.

mod common;
#[path = "browser/driver.rs"]
mod driver;
#[path = "browser/media.rs"]
mod media;

use std::path::PathBuf;
use std::time::Duration;

use common::{next_within, Got, Server, Ws};
use driver::{artifacts, click, goto, js, screenshot, type_into, wait_js, Browser};
use fantoccini::Client;
use futures_util::SinkExt;
use media::HlsEncoder;
use tokio_tungstenite::tungstenite::Message;

const CHANNEL: &str = "browser-e2e";
const KEY: &str = "k3y_Browser-1";
/// Whole-scenario bound; every step inside has its own, shorter one.
const SCENARIO: Duration = Duration::from_secs(240);
const STATE: Duration = Duration::from_secs(45);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_publishes_plays_probes_and_feeds_hls() {
    for tool in [&["ffmpeg"][..], &["ffprobe"]] {
        driver::tool(tool);
    }
    tokio::time::timeout(SCENARIO, scenario())
        .await
        .expect("browser scenario exceeded its overall time bound");
}

async fn scenario() {
    let artifacts = artifacts();
    // Short heartbeats so the page handles `h` between chunks; several
    // loopback connections at once (two pages, probes, the encoder).
    let mut server = Server::process(&[
        ("HEARTBEAT_SECONDS", "2"),
        ("MAX_IP_CONCURRENT_CONNECTIONS", "32"),
    ]);
    let origin = format!("http://{}", server.addr);
    let browser = Browser::start(&artifacts).await;
    let c = browser.client();

    let publisher = publish(c, &origin).await;
    probe_first_chunk(&server, c).await;

    let player = c
        .new_window(false)
        .await
        .expect("open a second window")
        .handle;
    switch(c, player.clone()).await;
    refused_second_publisher(c, &origin).await;
    play(c, &artifacts).await;

    let hls_dir = tempfile::tempdir().expect("temp dir for HLS");
    let mut hls = HlsEncoder::start(hls_dir.path(), artifacts.join("ffmpeg-hls.log"));
    let encoder_ws =
        common::ws(&server.url(&format!("/{CHANNEL}/{KEY}/receive-clear-cache"))).await;
    let encoder = tokio::spawn(feed_encoder(encoder_ws, hls.feeder()));
    wait_for_segments(&hls, 3).await;

    switch(c, publisher).await;
    screenshot(c, &artifacts.join("browser-publish.png")).await;
    click(c, "#publish-stop").await;
    wait_js(
        c,
        "return document.getElementById('publish-state').dataset.state === 'stopped';",
        "publisher stopped",
        STATE,
    )
    .await;

    let (bytes, close) = tokio::time::timeout(Duration::from_secs(30), encoder)
        .await
        .expect("the encoder's receiver was not closed after the publisher stopped")
        .expect("encoder task")
        .unwrap_or_else(|e| panic!("encoder's receiver: {e}"));
    assert_eq!(
        close,
        Some(1000),
        "end of stream closes receivers with 1000"
    );
    assert!(bytes > 0, "the encoder received media");

    let status = hls.finish(Duration::from_secs(60));
    let log = std::fs::read_to_string(&hls.log).unwrap_or_default();
    assert!(status.success(), "ffmpeg exited with {status}:\n{log}");
    check_segments(&hls);

    switch(c, player).await;
    wait_js(
        c,
        "return document.getElementById('play-state').dataset.state === 'ended';",
        "player ends with the stream",
        STATE,
    )
    .await;
    screenshot(c, &artifacts.join("browser-play-ended.png")).await;

    browser.quit().await;
    assert!(server.stop().success(), "server exits cleanly");
}

/// Where the generator writes the recording: `CHROMIUM_FIXTURE_OUT`, or the
/// committed fixture.
fn recording_path() -> PathBuf {
    std::env::var_os("CHROMIUM_FIXTURE_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/chromium-mediarecorder-vp8-opus.webm")
        })
}

/// Recorder chunks the generator waits for: at the page's default 500 ms
/// timeslice, about 9.5 s of media (Chromium's second keyframe comes ~5 s in).
const RECORDING_CHUNKS: u32 = 19;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fixture generator: run by tests/fixtures/regenerate.sh"]
async fn record_chromium_fixture() {
    for tool in [&["ffmpeg"][..], &["ffprobe"]] {
        driver::tool(tool);
    }
    tokio::time::timeout(SCENARIO, record())
        .await
        .expect("recording exceeded its overall time bound");
}

async fn record() {
    let artifacts = artifacts();
    let mut server = Server::process(&[]);
    let origin = format!("http://{}", server.addr);
    // Waiting before the publisher exists, this receiver gets every chunk.
    let receiver = common::ws(&server.url(&format!("/{CHANNEL}/{KEY}/receive"))).await;
    let (feed, chunks) = std::sync::mpsc::channel();
    let receiver = tokio::spawn(feed_encoder(receiver, feed));
    let browser = Browser::start(&artifacts).await;
    let c = browser.client();

    publish(c, &origin).await;
    let recorded = js(
        c,
        "return document.getElementById('publish-mime').textContent;",
    )
    .await;
    let recorded = recorded.as_str().unwrap_or("").to_lowercase();
    assert!(
        recorded.contains("vp8") && recorded.contains("opus"),
        "the page records VP8 + Opus (camera and microphone), got {recorded:?}"
    );
    wait_js(
        c,
        &format!(
            "return Number(document.getElementById('chunks-sent').textContent) >= {RECORDING_CHUNKS};"
        ),
        "the recorder delivers its chunks",
        Duration::from_secs(60),
    )
    .await;
    click(c, "#publish-stop").await;
    wait_js(
        c,
        "return document.getElementById('publish-state').dataset.state === 'stopped';",
        "publisher stopped",
        STATE,
    )
    .await;
    let sent = js(
        c,
        "return Number(document.getElementById('bytes-sent').dataset.bytes);",
    )
    .await;

    let (bytes, close) = tokio::time::timeout(Duration::from_secs(30), receiver)
        .await
        .expect("the receiver was not closed after the publisher stopped")
        .expect("receiver task")
        .unwrap_or_else(|e| panic!("receiver: {e}"));
    assert_eq!(
        close,
        Some(1000),
        "end of stream closes the receiver with 1000"
    );
    let recording: Vec<u8> = chunks.try_iter().flatten().collect();
    assert_eq!(recording.len(), bytes);
    assert_eq!(
        Some(bytes as u64),
        sent.as_u64(),
        "the receiver got every byte the page sent"
    );
    browser.quit().await;
    assert!(server.stop().success(), "server exits cleanly");

    let path = recording_path();
    std::fs::write(&path, &recording).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    assert_eq!(
        media::probe_video(&path),
        ("vp8".to_owned(), 640, 480),
        "ffprobe reads the recording as the fake camera's VP8"
    );
    let errors = media::decode_errors(&path);
    assert!(
        errors.is_empty(),
        "{} does not decode cleanly: {errors}",
        path.display()
    );
    println!("wrote {} ({bytes} bytes)", path.display());
}

async fn switch(c: &Client, window: fantoccini::wd::WindowHandle) {
    tokio::time::timeout(driver::COMMAND, c.switch_to_window(window))
        .await
        .expect("switching windows timed out")
        .expect("switch window");
}

/// Loads the page, checks field validation, publishes the fake camera.
async fn publish(c: &Client, origin: &str) -> fantoccini::wd::WindowHandle {
    goto(c, &format!("{origin}/")).await;
    let foreign = js(
        c,
        "return [...document.querySelectorAll('[src],[href]')].map((e) => e.src || e.href)
            .filter((u) => u && !u.startsWith(location.origin));",
    )
    .await;
    assert_eq!(
        foreign,
        serde_json::json!([]),
        "the page loads only its own files"
    );

    type_into(c, "#channel", "not valid!").await;
    let error = js(
        c,
        "return document.getElementById('channel-error').textContent;",
    )
    .await;
    assert!(
        error
            .as_str()
            .is_some_and(|e| e.contains("may contain only")),
        "an invalid channel is explained, got {error}"
    );
    click(c, "#publish-start").await;
    let state = js(
        c,
        "return document.getElementById('publish-state').dataset.state;",
    )
    .await;
    assert_eq!(
        state, "invalid",
        "publishing with an invalid channel is refused"
    );

    type_into(c, "#channel", CHANNEL).await;
    type_into(c, "#key", KEY).await;
    click(c, "#publish-start").await;
    wait_js(
        c,
        "return document.getElementById('publish-state').dataset.state === 'publishing'
            && Number(document.getElementById('bytes-sent').dataset.bytes) > 0;",
        "page publishes and sends bytes",
        STATE,
    )
    .await;
    tokio::time::timeout(driver::COMMAND, c.window())
        .await
        .expect("window handle timed out")
        .expect("window handle")
}

/// `probe` returns one chunk that ffprobe reads as the fake camera's video.
async fn probe_first_chunk(server: &Server, c: &Client) {
    let mut probe = common::ws(&server.url(&format!("/{CHANNEL}/{KEY}/probe"))).await;
    let chunk = loop {
        match next_within(&mut probe, Duration::from_secs(20)).await {
            Some(Got::Binary(b)) => break b,
            Some(Got::Text(t)) if t == "h" => continue,
            other => panic!("probe: expected a chunk, got {other:?}"),
        }
    };
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), &chunk).expect("write the probed chunk");
    let (codec, width, height) = media::probe_video(file.path());
    let recorded = js(
        c,
        "return document.getElementById('publish-mime').textContent;",
    )
    .await;
    let recorded = recorded.as_str().unwrap_or("").to_lowercase();
    let expected = if recorded.contains("vp8") {
        "vp8"
    } else if recorded.contains("vp9") {
        "vp9"
    } else if recorded.contains("h264") || recorded.contains("avc1") {
        "h264"
    } else {
        panic!("unexpected recorder type {recorded:?}")
    };
    assert_eq!(codec, expected, "ffprobe's codec for {recorded}");
    assert_eq!((width, height), (640, 480), "the fake camera's resolution");
}

/// A second publisher on the channel is refused before the upgrade (close
/// 1006 in the browser); the page says so.
async fn refused_second_publisher(c: &Client, origin: &str) {
    goto(c, &format!("{origin}/?channel={CHANNEL}&key={KEY}")).await;
    click(c, "#publish-start").await;
    wait_js(
        c,
        "return document.getElementById('publish-state').dataset.state === 'error'
            && document.getElementById('publish-log').textContent.includes('refused the connection');",
        "second publisher is shown as refused",
        STATE,
    )
    .await;
}

/// The page's MSE player plays the channel: time advances, video has a size.
async fn play(c: &Client, artifacts: &std::path::Path) {
    click(c, "#play-start").await;
    let start = wait_js(
        c,
        "const v = document.getElementById('video');
         return v.videoWidth > 0 && v.currentTime > 0.3 ? v.currentTime : null;",
        "player shows video",
        STATE,
    )
    .await;
    let start = start.as_f64().unwrap_or(0.0);
    wait_js(
        c,
        &format!(
            "const v = document.getElementById('video');
             return v.currentTime > {start} + 1.5
                && document.getElementById('play-state').dataset.state === 'playing'
                && Number(document.getElementById('bytes-received').dataset.bytes) > 0;"
        ),
        "player's time advances",
        STATE,
    )
    .await;
    click(c, "#probe-start").await;
    wait_js(
        c,
        "const r = document.getElementById('probe-result');
         return r.dataset.container === 'WebM' || r.dataset.container === 'MP4';",
        "page probe shows the container",
        STATE,
    )
    .await;
    screenshot(c, &artifacts.join("browser-play.png")).await;
}

/// Writes every chunk to ffmpeg; returns the bytes and the close code.
async fn feed_encoder(
    mut ws: Ws,
    feed: std::sync::mpsc::Sender<Vec<u8>>,
) -> Result<(usize, Option<u16>), String> {
    let hello = tokio::time::timeout(common::STEP, ws.send(Message::Text("h".into()))).await;
    if !matches!(hello, Ok(Ok(()))) {
        return Err(format!("sending the first heartbeat: {hello:?}"));
    }
    let mut bytes = 0;
    loop {
        match next_within(&mut ws, Duration::from_secs(30)).await {
            None => return Err(format!("nothing for 30 s after {bytes} bytes")),
            Some(Got::Binary(b)) => {
                bytes += b.len();
                feed.send(b).map_err(|_| "ffmpeg's input closed early")?;
            }
            Some(Got::Text(t)) if t == "h" => continue,
            Some(Got::Text(t)) => return Err(format!("server said {t:?}")),
            Some(Got::Closed(code)) => return Ok((bytes, code)),
        }
    }
}

async fn wait_for_segments(hls: &HlsEncoder, count: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while hls.segments().len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "HLS playlist has {} segments after 60 s; ffmpeg says:\n{}",
            hls.segments().len(),
            std::fs::read_to_string(&hls.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The playlist lists at least two segments and each decodes cleanly.
fn check_segments(hls: &HlsEncoder) {
    let segments = hls.segments();
    assert!(
        segments.len() >= 2,
        "playlist lists {} segments",
        segments.len()
    );
    for segment in &segments {
        let errors = media::decode_errors(segment);
        assert!(
            errors.is_empty(),
            "{} does not decode cleanly: {errors}",
            segment.display()
        );
    }
}
