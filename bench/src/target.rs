//! What is measured: the server at `--target` (loopback only unless allowed)
//! and the ceiling relay, started as a child process of this tool.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::client::Endpoint;
use crate::procstat::Proc;

/// One side of a comparison: where to connect and which process to sample.
pub(crate) struct Target {
    pub name: &'static str,
    /// Where publishers connect (and receivers, unless `receive` is set).
    pub endpoint: Endpoint,
    pub proc: Option<Proc>,
    /// Where receivers connect instead, spread round robin (a cascade's edges).
    pub receive: Vec<Endpoint>,
    /// The processes behind `receive`, sampled together.
    pub receive_procs: Vec<Proc>,
}

impl Target {
    /// Where receiver `i` connects.
    pub(crate) fn receiver_endpoint(&self, i: usize) -> &Endpoint {
        match self.receive.len() {
            0 => &self.endpoint,
            n => &self.receive[i % n],
        }
    }
}

/// Resolves a `ws://HOST:PORT` URL; refuses non-loopback hosts unless allowed.
pub(crate) async fn server(
    url: &str,
    allow_remote: bool,
    pid: Option<u32>,
    play: bool,
) -> Result<Target> {
    Ok(Target {
        name: if play { "ours-play" } else { "ours" },
        endpoint: endpoint(url, allow_remote, play).await?,
        proc: pid.map(Proc::pid),
        receive: Vec::new(),
        receive_procs: Vec::new(),
    })
}

/// A cascade: publishers on `publish`, receivers spread over `receive`.
pub(crate) async fn cascade(
    publish: &str,
    receive: &[String],
    allow_remote: bool,
    pid: Option<u32>,
    receive_pids: &[u32],
) -> Result<Target> {
    let mut endpoints = Vec::new();
    for url in receive {
        endpoints.push(endpoint(url, allow_remote, false).await?);
    }
    Ok(Target {
        name: "cascade",
        endpoint: endpoint(publish, allow_remote, false).await?,
        proc: pid.map(Proc::pid),
        receive: endpoints,
        receive_procs: receive_pids.iter().copied().map(Proc::pid).collect(),
    })
}

async fn endpoint(url: &str, allow_remote: bool, play: bool) -> Result<Endpoint> {
    let parsed = url::Url::parse(url).with_context(|| format!("invalid target {url:?}"))?;
    if parsed.scheme() != "ws" {
        bail!("{url}: targets must be ws:// URLs (wss is not supported)");
    }
    let host = parsed
        .host_str()
        .with_context(|| format!("{url} has no host"))?
        .to_owned();
    let port = parsed
        .port_or_known_default()
        .with_context(|| format!("{url} has no port"))?;
    let lookup = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((lookup.as_str(), port))
        .await?
        .collect();
    let addr = *addrs
        .first()
        .with_context(|| format!("{url} resolves to nothing"))?;
    if !allow_remote && !addrs.iter().all(|a| a.ip().is_loopback()) {
        bail!("target {url} is not a loopback address; pass --allow-remote to measure it");
    }
    Ok(Endpoint {
        addr,
        host: format!("{host}:{port}"),
        masked: true,
        play,
    })
}

/// The ceiling relay child; killed when dropped.
pub(crate) struct Relay {
    child: Child,
    pub target: Target,
}

impl Relay {
    pub(crate) fn start() -> Result<Relay> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(["relay", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .context("start the ceiling relay")?;
        let stdout = child.stdout.take().context("relay stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(a) = line.strip_prefix("relay listening on ") {
                    let _ = tx.send(a.trim().to_owned());
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                bail!("the ceiling relay did not start");
            }
        };
        let addr: SocketAddr = line.parse().context("relay address")?;
        let pid = child.id();
        Ok(Relay {
            child,
            target: Target {
                name: "ceiling",
                endpoint: Endpoint {
                    addr,
                    host: addr.to_string(),
                    masked: false,
                    play: false,
                },
                proc: Some(Proc::pid(pid)),
                receive: Vec::new(),
                receive_procs: Vec::new(),
            },
        })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
