//! The test page's MSE player in a real headless Firefox: it plays without
//! freezing whatever the publisher's keyframe interval (issue 20: Firefox's
//! MSE dropped the video of every Cluster that did not start at a keyframe).
//!
//! Firefox publishes its fake camera and microphone through the page and a
//! second Firefox window plays the channel, then headless Chromium plays it
//! too; then Chromium publishes and Firefox plays that. Each time `video.currentTime` and the decoded
//! frame count are sampled every 50 ms for 15 s: neither may stand still for
//! more than 1.5 s, and time never runs backwards.
//!
//! Needs Debian's `firefox-esr`, `chromium` and `chromium-driver`, and
//! `geckodriver` (`cargo install geckodriver --locked`); see `.ci/run`.
//! Without them the test fails. Screenshots land in `target/test-artifacts/`.

mod common;
#[path = "browser/driver.rs"]
mod driver;

use std::time::Duration;

use common::Server;
use driver::{artifacts, click, goto, js, screenshot, wait_js, Browser};
use fantoccini::Client;
use serde_json::Value;

const KEY: &str = "k3y_Firefox-1";
/// Whole-scenario bound; every step inside has its own, shorter one.
const SCENARIO: Duration = Duration::from_secs(300);
const STATE: Duration = Duration::from_secs(45);
/// How long playback is watched, and the longest stand-still allowed.
const WATCH: Duration = Duration::from_secs(15);
const MAX_FREEZE: f64 = 1.5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefox_and_chromium_play_each_others_publishers_without_freezing() {
    tokio::time::timeout(SCENARIO, scenario())
        .await
        .expect("Firefox scenario exceeded its overall time bound");
}

async fn scenario() {
    let artifacts = artifacts();
    let mut server = Server::process(&[
        ("HEARTBEAT_SECONDS", "2"),
        ("MAX_IP_CONCURRENT_CONNECTIONS", "32"),
    ]);
    let origin = format!("http://{}", server.addr);

    let firefox = Browser::firefox(&artifacts).await;
    let ff = firefox.client();
    let ff_publisher = publish(ff, &origin, "from-firefox").await;
    let ff_player = new_window(ff).await;
    switch(ff, ff_player.clone()).await;
    let watched = watch_playing(ff, &origin, "from-firefox").await;
    screenshot(ff, &artifacts.join("firefox-plays-firefox.png")).await;
    watched.check("Firefox publisher played in Firefox");

    let chromium = Browser::start(&artifacts).await;
    let cr = chromium.client();
    let watched = watch_playing(cr, &origin, "from-firefox").await;
    screenshot(cr, &artifacts.join("chromium-plays-firefox.png")).await;
    watched.check("Firefox publisher played in Chromium");

    publish(cr, &origin, "from-chromium").await;
    let watched = watch_playing(ff, &origin, "from-chromium").await;
    screenshot(ff, &artifacts.join("firefox-plays-chromium.png")).await;
    watched.check("Chromium publisher played in Firefox");

    click(cr, "#publish-stop").await;
    wait_state(cr, "publish-state", "stopped").await;
    chromium.quit().await;
    switch(ff, ff_publisher).await;
    click(ff, "#publish-stop").await;
    wait_state(ff, "publish-state", "stopped").await;
    firefox.quit().await;
    assert!(server.stop().success(), "server exits cleanly");
}

/// Loads the page for `channel` and publishes the fake camera and microphone.
async fn publish(c: &Client, origin: &str, channel: &str) -> fantoccini::wd::WindowHandle {
    goto(c, &format!("{origin}/?channel={channel}&key={KEY}")).await;
    click(c, "#publish-start").await;
    wait_js(
        c,
        "return document.getElementById('publish-state').dataset.state === 'publishing'
            && Number(document.getElementById('bytes-sent').dataset.bytes) > 0;",
        &format!("page publishes {channel}"),
        STATE,
    )
    .await;
    let mime = js(
        c,
        "return document.getElementById('publish-mime').textContent;",
    )
    .await;
    println!("{channel}: publishing {mime}");
    tokio::time::timeout(driver::COMMAND, c.window())
        .await
        .expect("window handle timed out")
        .expect("window handle")
}

/// What the samples say about one watch.
struct Watched {
    /// Longest wall-clock stretch without `currentTime` moving, in seconds.
    time_freeze: f64,
    /// Longest wall-clock stretch without a newly decoded video frame.
    frame_freeze: f64,
    /// Samples where `currentTime` went down.
    backwards: usize,
    /// Media seconds played and wall seconds watched.
    media: f64,
    wall: f64,
    frames: u64,
    report: String,
}

impl Watched {
    fn check(&self, what: &str) {
        println!(
            "{what}: {:.1} s of media in {:.1} s, {} frames; longest freeze: currentTime {:.2} s, \
             frames {:.2} s; backward steps {}",
            self.media, self.wall, self.frames, self.time_freeze, self.frame_freeze, self.backwards
        );
        assert!(
            self.wall >= WATCH.as_secs_f64() - 1.0,
            "{what}: only {:.1} s watched",
            self.wall
        );
        assert!(
            self.time_freeze <= MAX_FREEZE && self.frame_freeze <= MAX_FREEZE,
            "{what}: playback froze (currentTime still for {:.2} s, no new frame for {:.2} s)\n{}",
            self.time_freeze,
            self.frame_freeze,
            self.report
        );
        assert_eq!(
            self.backwards, 0,
            "{what}: currentTime went backwards\n{}",
            self.report
        );
        assert!(
            self.media >= 0.8 * self.wall,
            "{what}: only {:.1} s of media in {:.1} s\n{}",
            self.media,
            self.wall,
            self.report
        );
    }
}

/// Loads the page for `channel` in the current window, plays it, waits until
/// playback runs near the live edge, then samples it for [`WATCH`].
async fn watch_playing(c: &Client, origin: &str, channel: &str) -> Watched {
    goto(c, &format!("{origin}/?channel={channel}&key={KEY}")).await;
    click(c, "#play-start").await;
    wait_js(
        c,
        "const v = document.getElementById('video');
         const delay = Number(document.getElementById('live-delay').dataset.seconds);
         return v.videoWidth > 0 && v.currentTime > 0.3 && delay < 3
            && document.getElementById('play-state').dataset.state === 'playing';",
        &format!("{channel} plays near the live edge"),
        STATE,
    )
    .await;
    // Samples in the page, where no WebDriver round trip can delay them.
    js(
        c,
        "const v = document.getElementById('video');
         window.watchSamples = [];
         window.watchTimer = setInterval(() => {
           const q = v.getVideoPlaybackQuality();
           window.watchSamples.push([performance.now() / 1000, v.currentTime, q.totalVideoFrames]);
         }, 50);
         return true;",
    )
    .await;
    let count = (WATCH.as_millis() / 50) as u64;
    let samples = wait_js(
        c,
        &format!(
            "if (window.watchSamples.length < {count}) return null;
             clearInterval(window.watchTimer);
             return window.watchSamples;"
        ),
        &format!("{channel}: {count} playback samples"),
        WATCH + STATE,
    )
    .await;
    let report = driver::page_report(c).await;
    summarise(&samples, report)
}

fn summarise(samples: &Value, report: String) -> Watched {
    let samples: Vec<(f64, f64, u64)> = samples
        .as_array()
        .expect("samples are an array")
        .iter()
        .map(|s| {
            (
                s[0].as_f64().expect("sample time"),
                s[1].as_f64().expect("sample currentTime"),
                s[2].as_u64().expect("sample frame count"),
            )
        })
        .collect();
    let (first, last) = (samples[0], samples[samples.len() - 1]);
    let mut watched = Watched {
        time_freeze: 0.0,
        frame_freeze: 0.0,
        backwards: 0,
        media: last.1 - first.1,
        wall: last.0 - first.0,
        frames: last.2 - first.2,
        report,
    };
    let (mut time_moved, mut frame_moved) = (first, first);
    for pair in samples.windows(2) {
        let (previous, now) = (pair[0], pair[1]);
        if now.1 < previous.1 {
            watched.backwards += 1;
        }
        if now.1 != previous.1 {
            time_moved = now;
        }
        if now.2 != previous.2 {
            frame_moved = now;
        }
        watched.time_freeze = watched.time_freeze.max(now.0 - time_moved.0);
        watched.frame_freeze = watched.frame_freeze.max(now.0 - frame_moved.0);
    }
    watched
}

async fn new_window(c: &Client) -> fantoccini::wd::WindowHandle {
    tokio::time::timeout(driver::COMMAND, c.new_window(false))
        .await
        .expect("opening a window timed out")
        .expect("open a second window")
        .handle
}

async fn switch(c: &Client, window: fantoccini::wd::WindowHandle) {
    tokio::time::timeout(driver::COMMAND, c.switch_to_window(window))
        .await
        .expect("switching windows timed out")
        .expect("switch window");
}

async fn wait_state(c: &Client, id: &str, state: &str) {
    wait_js(
        c,
        &format!("return document.getElementById('{id}').dataset.state === '{state}';"),
        &format!("#{id} becomes {state}"),
        STATE,
    )
    .await;
}
