//! Headless Chromium plays `GET /{channel}/{key}/play` through the test page's
//! "Play over HTTP" option: a plain `<video src>`, no MediaSource. The video's
//! time passes 3 s and a screenshot of the element is not black.
//!
//! Needs Debian's `chromium`, `chromium-driver` and `ffmpeg`; fails without
//! them. The screenshot lands in `target/test-artifacts/`.

mod common;
#[path = "browser/driver.rs"]
mod driver;

use std::time::Duration;

use common::media::{cut, run_tool, webm_video};
use common::{close, send, ws, Server};
use driver::{artifacts, click, goto, js, screenshot, wait_js, Browser};
use fantoccini::Locator;

const SCENARIO: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_the_http_stream_in_a_plain_video_element() {
    driver::tool(&["ffmpeg"]);
    tokio::time::timeout(SCENARIO, scenario())
        .await
        .expect("browser scenario exceeded its overall time bound");
}

async fn scenario() {
    let artifacts = artifacts();
    let server = Server::start(&[("MAX_IP_CONCURRENT_CONNECTIONS", "16")]);
    // 20 s of VP8 + Opus test pattern, published at about real time.
    let media = webm_video("libvpx");
    let chunks = cut(&media, 11);
    let mut publisher = ws(&server.url("/http-play/k/publish")).await;
    let pause = Duration::from_micros(20_000_000 / chunks.len() as u64);
    let publishing = tokio::spawn(async move {
        for chunk in chunks {
            send(&mut publisher, chunk).await;
            tokio::time::sleep(pause).await;
        }
        close(publisher).await;
    });

    let browser = Browser::start(&artifacts).await;
    let c = browser.client();
    goto(
        c,
        &format!("http://{}/?channel=http-play&key=k", server.addr),
    )
    .await;
    js(
        c,
        "document.getElementById('play-transport').value = 'http';",
    )
    .await;
    click(c, "#play-start").await;
    let src = js(
        c,
        "return document.getElementById('video').getAttribute('src');",
    )
    .await;
    assert_eq!(src, "/http-play/k/play", "a plain src, no MediaSource");
    wait_js(
        c,
        "const v = document.getElementById('video');
         return v.currentTime > 3 && v.videoWidth > 0
            && document.getElementById('play-state').dataset.state === 'playing';",
        "the video's time passes 3 s",
        Duration::from_secs(60),
    )
    .await;
    let connections = server.metric("ws_stream_connections{kind=\"play\"}");
    assert!(connections >= 1.0, "the element reads /play");

    let element = tokio::time::timeout(driver::COMMAND, c.find(Locator::Css("#video")))
        .await
        .expect("find the video in time")
        .expect("the video element");
    let png = tokio::time::timeout(driver::COMMAND, element.screenshot())
        .await
        .expect("screenshot in time")
        .expect("screenshot of the video");
    let shot = artifacts.join("browser-http-play.png");
    std::fs::write(&shot, &png).expect("write the screenshot");
    screenshot(c, &artifacts.join("browser-http-play-page.png")).await;
    let lit = lit_fraction(&shot);
    assert!(
        lit > 0.3,
        "the video frame is black: {:.0} % of its pixels are lit ({})",
        lit * 100.0,
        shot.display()
    );

    browser.quit().await;
    publishing.abort();
}

/// The fraction of a PNG's pixels brighter than near-black (ffmpeg decodes it to grey).
fn lit_fraction(png: &std::path::Path) -> f64 {
    let path = png.display().to_string();
    let args = [
        "-v", "error", "-nostdin", "-i", &path, "-f", "rawvideo", "-pix_fmt", "gray", "-",
    ];
    let (ok, grey, err) = run_tool("ffmpeg", &args, &[]);
    assert!(ok && !grey.is_empty(), "ffmpeg cannot read {path}: {err}");
    grey.iter().filter(|&&v| v > 40).count() as f64 / grey.len() as f64
}
