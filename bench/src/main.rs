//! `ws-stream-bench`: load generator for any server speaking
//! `ws://HOST:PORT/{channel}/{key}/{publish|receive}`, compared in the same run
//! with a minimal relay (the loopback ceiling). See BENCHMARKS.md.

mod burst;
mod chunk;
mod client;
mod idle;
mod media;
mod procstat;
mod publisher;
mod receiver;
mod relay;
mod report;
mod scenario;
mod stats;
mod target;
mod traffic;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::scenario::Load;
use crate::target::{Relay, Target};

const MAX_RECEIVERS: usize = 20_000;
const MAX_DURATION_S: f64 = 600.0;
const MAX_RUNS: usize = 20;

#[derive(Parser)]
#[command(
    name = "ws-stream-bench",
    version,
    about = "Benchmark a ws-stream relay against the loopback ceiling"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args)]
struct Common {
    /// Server under test, e.g. ws://127.0.0.1:8080 (omit to measure only the ceiling).
    #[arg(long, global = true)]
    target: Option<String>,
    /// PID of the server under test, for its CPU time and RSS from /proc.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// A cascade: publishers on this server (its PID: --server-pid), receivers on
    /// --receive-target; measured beside the direct fan-out from this server.
    #[arg(
        long,
        global = true,
        requires = "receive_target",
        conflicts_with = "target"
    )]
    publish_target: Option<String>,
    /// Servers receivers connect to, spread round robin (edges of --publish-target).
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        requires = "publish_target"
    )]
    receive_target: Vec<String>,
    /// PIDs of the --receive-target servers, sampled together.
    #[arg(long, global = true, value_delimiter = ',')]
    receive_pid: Vec<u32>,
    /// Allow a --target that is not a loopback address.
    #[arg(long, global = true)]
    allow_remote: bool,
    /// Repetitions; tables show the median (min–max).
    #[arg(long, global = true, default_value_t = 3)]
    runs: usize,
    /// Seconds of publishing per run (idle: seconds connections are held).
    #[arg(long, global = true, default_value_t = 5.0)]
    duration: f64,
    /// Skip the ceiling relay.
    #[arg(long, global = true)]
    no_ceiling: bool,
    /// How the server's receivers read: WebSocket `receive`, HTTP `play`
    /// (chunked body), or `both` (two sides of the same run, interleaved).
    #[arg(long, global = true, value_enum, default_value_t = ReceiveKind::Receive)]
    receive_kind: ReceiveKind,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReceiveKind {
    Receive,
    Play,
    Both,
}

#[derive(Clone, Copy, ValueEnum)]
enum Profile {
    /// 2.5 Mbit/s in 100 ms chunks (31,250 B).
    Realistic,
    /// 64 KiB chunks as fast as the slowest receiver allows.
    Max,
}

#[derive(Args)]
struct LoadArgs {
    #[arg(long, value_enum, default_value_t = Profile::Max)]
    profile: Profile,
    /// Chunk size in bytes (overrides the profile; at least 32).
    #[arg(long)]
    chunk_size: Option<usize>,
    /// Bits per second per publisher, e.g. 2.5M, 800k, or `max` (overrides the profile).
    #[arg(long)]
    rate: Option<String>,
    /// How far (MiB) a publisher may lead its slowest healthy receiver; 0: no window
    /// (as fast as its socket accepts, so the server's own backpressure is measured).
    #[arg(long, default_value_t = 8)]
    window_mb: usize,
    /// Check every byte of every K-th chunk (the others: length, seed, first and last word).
    #[arg(long, default_value_t = 16)]
    verify_every: u64,
}

#[derive(Subcommand)]
enum Cmd {
    /// One publisher, N receivers (a comma list runs each N).
    Fanout {
        #[arg(long, value_delimiter = ',', default_value = "1")]
        receivers: Vec<usize>,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// M publishers with K receivers each.
    Channels {
        #[arg(long, default_value_t = 10)]
        publishers: usize,
        #[arg(long, default_value_t = 10)]
        receivers: usize,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// N idle receivers; reports the server's RSS per connection.
    Idle {
        #[arg(long, value_delimiter = ',', default_value = "5000")]
        receivers: Vec<usize>,
        /// Channels the receivers wait on (round robin).
        #[arg(long, default_value_t = 1)]
        channels: usize,
    },
    /// N WebSocket upgrades started at once; p50/p90/p99 time to the 101.
    Burst {
        #[arg(long, value_delimiter = ',', default_value = "1000")]
        connects: Vec<usize>,
    },
    /// K healthy receivers without and with S receivers that stop reading (ours only).
    Slow {
        #[arg(long, default_value_t = 50)]
        receivers: usize,
        #[arg(long, default_value_t = 2)]
        stuck: usize,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// A real recording (WebM, fragmented MP4) published at --rate to K healthy receivers
    /// and S receivers throttled below its rate (ours only): the throttled ones must skip
    /// to join points, not be cut. Run against a server with a small RECEIVER_QUEUE_MB.
    Media {
        /// The recording, e.g. made with ffmpeg (see BENCHMARKS.md).
        #[arg(long)]
        file: std::path::PathBuf,
        #[arg(long, default_value_t = 10)]
        receivers: usize,
        #[arg(long, default_value_t = 1)]
        slow: usize,
        /// Publishing rate, e.g. 4M (the recording's own bitrate or faster).
        #[arg(long, default_value = "4M")]
        rate: String,
        /// How fast a throttled receiver reads, e.g. 1M.
        #[arg(long, default_value = "1M")]
        slow_rate: String,
        #[arg(long, default_value_t = 16384)]
        chunk_size: usize,
    },
    /// Runs the ceiling relay (started by the tool itself).
    #[command(hide = true)]
    Relay {
        #[arg(long)]
        listen: SocketAddr,
    },
}

fn parse_rate(s: &str) -> Result<Option<f64>> {
    if s.eq_ignore_ascii_case("max") {
        return Ok(None);
    }
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1e3),
        Some((i, 'm' | 'M')) => (&s[..i], 1e6),
        Some((i, 'g' | 'G')) => (&s[..i], 1e9),
        _ => (s, 1.0),
    };
    match num.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(Some(v * mult)),
        _ => bail!("invalid --rate {s:?}: expected e.g. 2.5M, 800k or max"),
    }
}

fn load(common: &Common, a: &LoadArgs) -> Result<Load> {
    let (chunk, rate) = match a.profile {
        Profile::Realistic => (31_250, Some(2.5e6)),
        Profile::Max => (65_536, None),
    };
    let chunk = a.chunk_size.unwrap_or(chunk);
    if !(chunk::MIN_CHUNK..=(256 << 20)).contains(&chunk) {
        bail!("--chunk-size must be {} B to 256 MiB", chunk::MIN_CHUNK);
    }
    Ok(Load {
        chunk,
        rate_bps: match &a.rate {
            Some(r) => parse_rate(r)?,
            None => rate,
        },
        window_bytes: a.window_mb.min(1024) << 20,
        verify_every: a.verify_every.max(1),
        duration: Duration::from_secs_f64(common.duration),
        runs: common.runs,
    })
}

fn check_bounds(c: &Common, receivers: usize) -> Result<()> {
    if !(c.duration > 0.0 && c.duration <= MAX_DURATION_S) {
        bail!("--duration must be in (0, {MAX_DURATION_S}] seconds");
    }
    if !(1..=MAX_RUNS).contains(&c.runs) {
        bail!("--runs must be 1 to {MAX_RUNS}");
    }
    if !(1..=MAX_RECEIVERS).contains(&receivers) {
        bail!("receivers (all channels together) must be 1 to {MAX_RECEIVERS}");
    }
    Ok(())
}

async fn targets(c: &Common) -> Result<(Vec<Target>, Option<Relay>)> {
    let mut ours = Vec::new();
    if let Some(url) = &c.target {
        let kinds: &[bool] = match c.receive_kind {
            ReceiveKind::Receive => &[false],
            ReceiveKind::Play => &[true],
            ReceiveKind::Both => &[false, true],
        };
        for &play in kinds {
            ours.push(target::server(url, c.allow_remote, c.server_pid, play).await?);
        }
    }
    if let Some(publish) = &c.publish_target {
        let (remote, pid) = (c.allow_remote, c.server_pid);
        let cascade = target::cascade(publish, &c.receive_target, remote, pid, &c.receive_pid);
        ours.push(cascade.await?);
        let mut direct = target::server(publish, remote, pid, false).await?;
        direct.name = "direct";
        ours.push(direct);
    }
    let relay = if c.no_ceiling {
        None
    } else {
        Some(Relay::start()?)
    };
    if ours.is_empty() && relay.is_none() {
        bail!("nothing to measure: give --target or drop --no-ceiling");
    }
    Ok((ours, relay))
}

async fn run(cli: Cli) -> Result<u64> {
    let c = &cli.common;
    if let Cmd::Relay { listen } = cli.cmd {
        relay::serve(listen).await?;
        return Ok(0);
    }
    let limit = procstat::raise_nofile_limit();
    eprintln!(
        "open-file limit: {}",
        limit.map_or("unlimited".into(), |l| l.to_string())
    );
    let (ours, relay) = targets(c).await?;
    let all: Vec<&Target> = ours.iter().chain(relay.iter().map(|r| &r.target)).collect();
    match &cli.cmd {
        Cmd::Fanout { receivers, load: l } => {
            let mut errors = 0;
            for &n in receivers {
                check_bounds(c, n)?;
                errors +=
                    scenario::compare(&all, &load(c, l)?, 1, n, &format!("fanout N={n}")).await?;
            }
            Ok(errors)
        }
        Cmd::Channels {
            publishers,
            receivers,
            load: l,
        } => {
            check_bounds(c, publishers.saturating_mul(*receivers))?;
            let title = format!("channels {publishers} × {receivers}");
            scenario::compare(&all, &load(c, l)?, *publishers, *receivers, &title).await
        }
        Cmd::Idle {
            receivers,
            channels,
        } => {
            for &n in receivers {
                check_bounds(c, n)?;
            }
            let hold = Duration::from_secs_f64(c.duration);
            idle::run(&all, receivers, *channels, hold, c.runs).await?;
            Ok(0)
        }
        Cmd::Burst { connects } => {
            for &n in connects {
                check_bounds(c, n)?;
            }
            burst::run(&all, connects, c.runs).await?;
            Ok(0)
        }
        Cmd::Slow {
            receivers,
            stuck,
            load: l,
        } => {
            check_bounds(c, receivers + stuck)?;
            let Some(t) = ours.first() else {
                bail!("slow needs --target")
            };
            scenario::slow(t, &load(c, l)?, *receivers, *stuck).await
        }
        Cmd::Media {
            file,
            receivers,
            slow,
            rate,
            slow_rate,
            chunk_size,
        } => {
            check_bounds(c, receivers + slow)?;
            let Some(t) = ours.first() else {
                bail!("media needs --target")
            };
            let media = std::fs::read(file)
                .with_context(|| format!("reading --file {}", file.display()))?;
            if media.is_empty() || !(1..=(64 << 20)).contains(chunk_size) {
                bail!("media needs a non-empty --file and a --chunk-size of 1 B to 64 MiB");
            }
            let (Some(rate_bps), Some(slow_rate_bps)) = (parse_rate(rate)?, parse_rate(slow_rate)?)
            else {
                bail!("media needs finite --rate and --slow-rate");
            };
            let mut errors = 0;
            for run in 0..c.runs {
                let plan = media::MediaPlan {
                    media: media.clone(),
                    chunk: *chunk_size,
                    rate_bps,
                    healthy: *receivers,
                    slow: *slow,
                    slow_rate_bps,
                    tag: format!("bench-{}-media-r{run}", std::process::id()),
                };
                errors += media::run(t, &plan).await?;
            }
            Ok(errors)
        }
        Cmd::Relay { .. } => Ok(0),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(0) => ExitCode::SUCCESS,
        Ok(errors) => {
            eprintln!("ws-stream-bench: {errors} errors");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("ws-stream-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_accept_units_and_max() {
        assert_eq!(parse_rate("2.5M").unwrap(), Some(2.5e6));
        assert_eq!(parse_rate("800k").unwrap(), Some(8e5));
        assert_eq!(parse_rate("max").unwrap(), None);
        assert!(parse_rate("-1").is_err());
        assert!(parse_rate("fast").is_err());
    }
}
