//! ffprobe and ffmpeg for the browser test: what one chunk contains, and an
//! HLS encoder fed chunk by chunk, as the real HLS encoder does.
// Shared by several test crates: `pub` is how each crate reaches it.
#![allow(unreachable_pub)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::driver::tool;

/// The first video stream of `file`: (codec name, width, height).
pub fn probe_video(file: &Path) -> (String, u64, u64) {
    let out = Command::new(tool(&["ffprobe"]))
        .args(["-v", "error", "-show_streams", "-of", "json"])
        .arg(file)
        .output()
        .expect("run ffprobe");
    let text = String::from_utf8_lossy(&out.stdout);
    let json: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "ffprobe output is not JSON ({e}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let streams = json["streams"].as_array().cloned().unwrap_or_default();
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .unwrap_or_else(|| panic!("ffprobe finds no video stream: {text}"));
    (
        video["codec_name"].as_str().unwrap_or("").to_owned(),
        video["width"].as_u64().unwrap_or(0),
        video["height"].as_u64().unwrap_or(0),
    )
}

/// `ffmpeg` reading the stream on stdin and writing HLS into `dir`.
pub struct HlsEncoder {
    child: Child,
    feed: Option<mpsc::Sender<Vec<u8>>>,
    writer: Option<std::thread::JoinHandle<()>>,
    pub playlist: PathBuf,
    pub log: PathBuf,
}

impl HlsEncoder {
    /// VP8 and Opus cannot be copied into HLS: transcode, a key frame each second.
    pub fn start(dir: &Path, log: PathBuf) -> HlsEncoder {
        let playlist = dir.join("live.m3u8");
        let log_file = std::fs::File::create(&log).expect("ffmpeg log file");
        let mut child = Command::new(tool(&["ffmpeg"]))
            .args(["-hide_banner", "-nostdin", "-loglevel", "warning"])
            .args(["-i", "pipe:0"])
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"])
            .args(["-force_key_frames", "expr:gte(t,n_forced*1)"])
            .args(["-c:a", "aac", "-f", "hls", "-hls_time", "1"])
            .args(["-hls_list_size", "0"])
            .arg("-hls_segment_filename")
            .arg(dir.join("segment%03d.ts"))
            .arg(&playlist)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start ffmpeg");
        let mut stdin = child.stdin.take().expect("ffmpeg stdin");
        let (feed, chunks) = mpsc::channel::<Vec<u8>>();
        let writer = std::thread::spawn(move || {
            for chunk in chunks {
                if stdin.write_all(&chunk).is_err() {
                    break;
                }
            }
        });
        HlsEncoder {
            child,
            feed: Some(feed),
            writer: Some(writer),
            playlist,
            log,
        }
    }

    pub fn feeder(&self) -> mpsc::Sender<Vec<u8>> {
        self.feed.clone().expect("ffmpeg is being fed")
    }

    /// Segments the playlist lists so far.
    pub fn segments(&self) -> Vec<PathBuf> {
        let text = std::fs::read_to_string(&self.playlist).unwrap_or_default();
        let dir = self.playlist.parent().unwrap_or(Path::new("."));
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| dir.join(l))
            .collect()
    }

    /// Closes ffmpeg's input (once every feeder is dropped) and waits for its exit.
    pub fn finish(&mut self, limit: Duration) -> ExitStatus {
        self.feed = None;
        if let Some(writer) = self.writer.take() {
            let deadline = Instant::now() + limit;
            while !writer.is_finished() {
                assert!(
                    Instant::now() < deadline,
                    "ffmpeg's input is still open: a feeder was not dropped"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = writer.join();
        }
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "ffmpeg did not exit within {limit:?} of its input ending"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for HlsEncoder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// ffmpeg's complaints when decoding `file` completely (empty: clean).
pub fn decode_errors(file: &Path) -> String {
    let out = Command::new(tool(&["ffmpeg"]))
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    let mut errors = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        errors.push_str(&format!("(exit {})", out.status));
    }
    errors
}
