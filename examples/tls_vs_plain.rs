//! Relay throughput over `wss://` against plain `ws://`, in the same run, on
//! loopback: one publisher sending 64 KiB chunks as fast as the receivers take
//! them (never more than 8 MiB ahead of the slowest, so none is cut for lagging),
//! N receivers, alternating plain and TLS runs; medians reported.
//!
//! `cargo build --release && cargo run --release --example tls_vs_plain -- 10`
//! (the argument is N). The receivers offer TLS 1.3's suites in the order
//! Chromium and Firefox do (AES-128-GCM first), so the server encrypts what it
//! would for browsers; a second argument `aes256` offers AES-256-GCM first, as
//! rustls clients do by default. It starts `target/release/ws-stream-server` itself with
//! a certificate made here, and reads the server's CPU time from `/proc`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::Connector;

const CHUNK: usize = 64 * 1024;
const RUN: Duration = Duration::from_secs(4);
const RUNS: usize = 3;
/// How far the publisher may run ahead of the slowest receiver.
const WINDOW: usize = 8 << 20;

struct Server {
    child: Child,
    plain: String,
    tls: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(dir: &std::path::Path) -> Result<Server> {
    let exe = std::env::current_exe()?
        .parent()
        .and_then(|p| p.parent())
        .context("target dir")?
        .join("ws-stream-server");
    let mut child = Command::new(exe)
        .current_dir(dir)
        .envs([
            ("HTTP_PORT", "0"),
            ("SSL_PORT", "0"),
            ("BIND_ADDRESS", "127.0.0.1"),
            ("SSL_CERT", "cert.pem"),
            ("SSL_KEY", "key.pem"),
            ("LOG_REQUESTS", "NO"),
            ("CONCURRENT_LIMIT_WHITELIST", "127.0.0.1"),
            ("GOP_CACHE_SIZE_MB", "0"),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .context("start target/release/ws-stream-server (build it first)")?;
    let stdout = child.stdout.take().context("stdout")?;
    let (mut plain, mut tls) = (String::new(), String::new());
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if let Some(a) = line.split("listening on http://").nth(1) {
            plain = a.trim().to_owned();
        }
        if let Some(a) = line.split("listening on https://").nth(1) {
            tls = a.trim().to_owned();
        }
        if !plain.is_empty() && !tls.is_empty() {
            break;
        }
    }
    if plain.is_empty() || tls.is_empty() {
        bail!("the server did not report both listeners");
    }
    Ok(Server { child, plain, tls })
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // utime and stime are fields 14 and 15; 11 and 12 after the name and state.
    (f.get(10).copied().unwrap_or(0.0) + f.get(11).copied().unwrap_or(0.0)) / 100.0
}

/// One run: returns delivered MB/s summed over receivers.
async fn run(base: &str, connector: Option<Connector>, n: usize, channel: &str) -> Result<f64> {
    let connect = |path: String| {
        let connector = connector.clone();
        async move {
            let url = format!("{base}{path}");
            let (ws, _) =
                tokio_tungstenite::connect_async_tls_with_config(url, None, true, connector)
                    .await?;
            anyhow::Ok(ws)
        }
    };
    let progress: Arc<Vec<AtomicUsize>> = Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect());
    let mut readers = Vec::new();
    for i in 0..n {
        let mut ws = connect(format!("/{channel}/k/receive")).await?;
        let progress = progress.clone();
        readers.push(tokio::spawn(async move {
            let mut bytes = 0usize;
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Binary(b) = msg {
                    bytes += b.len();
                    progress[i].store(bytes, Ordering::Relaxed);
                }
            }
            bytes
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut publisher = connect(format!("/{channel}/k/publish")).await?;
    let chunk = bytes::Bytes::from(vec![7u8; CHUNK]);
    let started = Instant::now();
    let mut sent = 0usize;
    while started.elapsed() < RUN {
        let slowest = progress
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        if sent - slowest.min(sent) > WINDOW {
            tokio::time::sleep(Duration::from_micros(200)).await;
            continue;
        }
        publisher.send(Message::Binary(chunk.clone())).await?;
        sent += CHUNK;
    }
    publisher.close(None).await?;
    let mut total = 0usize;
    for r in readers {
        total += tokio::time::timeout(Duration::from_secs(30), r).await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64() / 1e6)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let aes256_first = std::env::args().nth(2).as_deref() == Some("aes256");
    let mut provider = rustls::crypto::ring::default_provider();
    if !aes256_first {
        // Browsers' order: TLS_AES_128_GCM_SHA256 before TLS_AES_256_GCM_SHA384.
        provider
            .cipher_suites
            .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    }
    let suite = provider.cipher_suites[0].suite();
    let _ = provider.install_default();
    let dir = tempfile::tempdir()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])?.signed_by(&key, &ca)?;
    std::fs::write(dir.path().join("cert.pem"), cert.pem())?;
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem())?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone())?;
    let client = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = Connector::Rustls(Arc::new(client));
    let server = start_server(dir.path())?;
    let pid = server.child.id();
    let (mut plain, mut tls, mut plain_cpu, mut tls_cpu) = (vec![], vec![], vec![], vec![]);
    for i in 0..RUNS {
        let cpu = cpu_seconds(pid);
        let mbs = run(&format!("ws://{}", server.plain), None, n, &format!("p{i}")).await?;
        plain_cpu.push((cpu_seconds(pid) - cpu) / (mbs * RUN.as_secs_f64() * 8.0 / 1000.0));
        plain.push(mbs);
        let cpu = cpu_seconds(pid);
        let mbs = run(
            &format!("wss://{}", server.tls),
            Some(connector.clone()),
            n,
            &format!("t{i}"),
        )
        .await?;
        tls_cpu.push((cpu_seconds(pid) - cpu) / (mbs * RUN.as_secs_f64() * 8.0 / 1000.0));
        tls.push(mbs);
        println!(
            "run {i}: ws {:.0} MB/s ({:.4} s/Gbit), wss {:.0} MB/s ({:.4} s/Gbit)",
            plain[i], plain_cpu[i], tls[i], tls_cpu[i]
        );
    }
    let (p, t) = (median(plain), median(tls));
    println!(
        "N = {n}, 64 KiB chunks, {RUNS} runs of {} s, clients offer {suite:?} first, medians:",
        RUN.as_secs()
    );
    println!("| | ws:// | wss:// | wss/ws |");
    println!("| --- | --- | --- | --- |");
    println!("| delivered MB/s | {p:.0} | {t:.0} | {:.2} |", t / p);
    let (pc, tc) = (median(plain_cpu), median(tls_cpu));
    println!(
        "| server CPU s per Gbit | {pc:.4} | {tc:.4} | {:.2} |",
        tc / pc
    );
    Ok(())
}
