//! Headless Chromium driven through a chromedriver, or headless Firefox
//! driven through a geckodriver, that the test starts on a free loopback port.
//! All are found on PATH (Debian's `chromium`, `chromium-driver` and
//! `firefox-esr`; `geckodriver` from `cargo install geckodriver --locked`); a
//! missing one fails the test. Dropping the [`Browser`] kills the driver's
//! process group and every browser process of its profile, whatever state
//! the test ended in.
// Shared by several test crates: `pub` is how each crate reaches it.
#![allow(unreachable_pub)]
// Shared by tests/browser.rs and tests/firefox.rs; each uses part of it.
#![allow(dead_code)]

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

/// Bound for one WebDriver command.
pub const COMMAND: Duration = Duration::from_secs(30);

/// `target/test-artifacts`: screenshots and page reports the browser tests leave.
pub fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

/// The first of `names` found on PATH; panics with an install hint otherwise.
pub fn tool(names: &[&str]) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "none of {names:?} is on PATH: the browser tests need Debian's chromium, \
         chromium-driver, firefox-esr and ffmpeg (apt-get install -y chromium chromium-driver \
         firefox-esr ffmpeg) and geckodriver (cargo install geckodriver --locked); .ci/run does it"
    );
}

pub struct Browser {
    driver: Child,
    client: Option<Client>,
    profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session with a fake camera.
    pub async fn start(artifacts: &Path) -> Browser {
        let chromium = tool(&["chromium", "chromium-browser", "google-chrome"]);
        let chromedriver = tool(&["chromedriver"]);
        let profile = tempfile::tempdir().expect("temp dir for the browser profile");
        let port = free_port();
        let mut driver = Command::new(&chromedriver);
        driver
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1");
        let caps = capabilities(&chromium, profile.path());
        Self::launch(
            driver,
            port,
            caps,
            profile,
            &artifacts.join("chromedriver.log"),
        )
        .await
    }

    /// Starts geckodriver and a headless Firefox session with a fake camera
    /// and microphone (Firefox's own fake devices, no permission prompt).
    pub async fn firefox(artifacts: &Path) -> Browser {
        let firefox = tool(&["firefox-esr", "firefox"]);
        let geckodriver = tool(&["geckodriver"]);
        let profile = tempfile::tempdir().expect("temp dir for the browser profile");
        let port = free_port();
        let mut driver = Command::new(&geckodriver);
        driver
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--marionette-host", "127.0.0.1", "--marionette-port", "0"]);
        let caps = firefox_capabilities(&firefox, profile.path());
        Self::launch(
            driver,
            port,
            caps,
            profile,
            &artifacts.join("geckodriver.log"),
        )
        .await
    }

    async fn launch(
        mut driver: Command,
        port: u16,
        caps: serde_json::Map<String, Value>,
        profile: tempfile::TempDir,
        log: &Path,
    ) -> Browser {
        let name = driver.get_program().to_string_lossy().into_owned();
        let log = File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let driver = driver
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let mut browser = Browser {
            driver,
            client: None,
            profile,
        };
        browser.wait_listening(&name, port);
        let url = format!("http://127.0.0.1:{port}");
        let mut builder = ClientBuilder::new(HttpConnector::new());
        let connect = builder.capabilities(caps).connect(&url);
        let client = tokio::time::timeout(Duration::from_secs(60), connect)
            .await
            .unwrap_or_else(|_| panic!("{name}'s browser session did not start within 60 s"))
            .expect("WebDriver session");
        browser.client = Some(client);
        browser
    }

    fn wait_listening(&mut self, name: &str, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.driver.try_wait() {
                panic!("{name} exited at start-up: {status}");
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{name} did not listen on 127.0.0.1:{port} within 20 s");
    }

    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("session is open")
    }

    /// Ends the WebDriver session (Chromium quits); the drop kills what is left.
    pub async fn quit(mut self) {
        if let Some(client) = self.client.take() {
            let _ = tokio::time::timeout(COMMAND, client.close()).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        kill_profile_processes(self.profile.path());
    }
}

fn capabilities(chromium: &Path, profile: &Path) -> serde_json::Map<String, Value> {
    let args = [
        "--headless".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--no-default-browser-check".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--disable-background-timer-throttling".to_owned(),
        "--disable-renderer-backgrounding".to_owned(),
        "--disable-backgrounding-occluded-windows".to_owned(),
        "--use-fake-device-for-media-stream".to_owned(),
        "--use-fake-ui-for-media-stream".to_owned(),
        "--autoplay-policy=no-user-gesture-required".to_owned(),
        "--window-size=1280,1500".to_owned(),
        format!("--user-data-dir={}", profile.display()),
    ];
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium.display().to_string(),
            "args": args,
        },
    });
    match caps {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

fn firefox_capabilities(firefox: &Path, profile: &Path) -> serde_json::Map<String, Value> {
    let caps = json!({
        "browserName": "firefox",
        "moz:firefoxOptions": {
            "binary": firefox.display().to_string(),
            "args": ["-headless", "-profile", profile.display().to_string(), "--window-size=1280,1500"],
            "prefs": {
                "media.navigator.streams.fake": true,
                "media.navigator.permission.disabled": true,
                "media.autoplay.default": 0,
                "dom.min_background_timeout_value": 4,
                "dom.timeout.enable_budget_throttling": false,
                "app.update.disabledForTesting": true,
                "browser.safebrowsing.update.enabled": false,
                "browser.safebrowsing.downloads.remote.enabled": false,
                "datareporting.policy.dataSubmissionEnabled": false,
                "network.captive-portal-service.enabled": false,
                "network.connectivity-service.enabled": false,
                "network.dns.disablePrefetch": true,
                "network.prefetch-next": false,
            },
            "log": { "level": "info" },
        },
    });
    match caps {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

/// Kills every process whose command line names this test's browser profile.
fn kill_profile_processes(profile: &Path) {
    let needle = profile.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

// === page helpers ===

/// Runs `script` (a function body) in the current window.
pub async fn js(c: &Client, script: &str) -> Value {
    tokio::time::timeout(COMMAND, c.execute(script, vec![]))
        .await
        .unwrap_or_else(|_| panic!("script timed out: {script}"))
        .unwrap_or_else(|e| panic!("script failed: {script}: {e}"))
}

/// Polls `script` until it returns something other than null/false.
pub async fn wait_js(c: &Client, script: &str, what: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let value = js(c, script).await;
        if !matches!(value, Value::Null | Value::Bool(false)) {
            return value;
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: not within {limit:?}; page says:\n{}",
                page_report(c).await
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The page's states and event logs, for failure messages.
pub async fn page_report(c: &Client) -> String {
    let script = r#"
        const text = (id) => { const e = document.getElementById(id); return e ? e.innerText : "(none)"; };
        return ["publish-state", "publish-log", "play-state", "play-log", "probe-state", "probe-log"]
            .map((id) => `#${id}: ${text(id)}`).join("\n");
    "#;
    match tokio::time::timeout(COMMAND, c.execute(script, vec![])).await {
        Ok(Ok(Value::String(s))) => s,
        other => format!("(page unreadable: {other:?})"),
    }
}

pub async fn click(c: &Client, css: &str) {
    let el = tokio::time::timeout(COMMAND, c.find(Locator::Css(css)))
        .await
        .unwrap_or_else(|_| panic!("finding {css} timed out"))
        .unwrap_or_else(|e| panic!("no element {css}: {e}"));
    tokio::time::timeout(COMMAND, el.click())
        .await
        .unwrap_or_else(|_| panic!("clicking {css} timed out"))
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

/// Replaces the text of the input `css` by typing `text`.
pub async fn type_into(c: &Client, css: &str, text: &str) {
    let el = tokio::time::timeout(COMMAND, c.find(Locator::Css(css)))
        .await
        .unwrap_or_else(|_| panic!("finding {css} timed out"))
        .unwrap_or_else(|e| panic!("no element {css}: {e}"));
    tokio::time::timeout(COMMAND, async {
        el.clear().await?;
        el.send_keys(text).await
    })
    .await
    .unwrap_or_else(|_| panic!("typing into {css} timed out"))
    .unwrap_or_else(|e| panic!("type into {css}: {e}"));
}

pub async fn goto(c: &Client, url: &str) {
    tokio::time::timeout(COMMAND, c.goto(url))
        .await
        .unwrap_or_else(|_| panic!("loading {url} timed out"))
        .unwrap_or_else(|e| panic!("load {url}: {e}"));
}

/// Saves a PNG of the current window.
pub async fn screenshot(c: &Client, path: &Path) {
    let png = tokio::time::timeout(COMMAND, c.screenshot())
        .await
        .expect("screenshot timed out")
        .expect("screenshot");
    std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
