//! TLS (wss://) beside plain ws://, with certificates generated in the test:
//! relay over TLS, hot reload without dropping streams, refused bad reloads,
//! start-up errors.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::hook::{Hook, Reply};
use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_tungstenite::Connector;

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    fn leaf(&self) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

impl Leaf {
    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let key = rustls::pki_types::PrivateKeyDer::try_from(
            KeyPair::from_pem(&self.key_pem).unwrap().serialize_der(),
        )
        .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![self.der.clone()], key)
            .unwrap();
        Arc::new(config)
    }
}

fn write_pair(dir: &Path, leaf: &Leaf) {
    std::fs::write(dir.join("cert.pem"), &leaf.cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), &leaf.key_pem).unwrap();
}

fn tls_server(dir: &Path, extra: &[(&str, &str)]) -> Server {
    let cert = dir.join("cert.pem").display().to_string();
    let key = dir.join("key.pem").display().to_string();
    let mut vars = vec![
        ("SSL_CERT", cert.as_str()),
        ("SSL_KEY", key.as_str()),
        ("SSL_PORT", "0"),
        ("SSL_CHECK_RELOAD_SECONDS", "1"),
    ];
    vars.extend_from_slice(extra);
    Server::start(&vars)
}

async fn wss(ca: &Ca, server: &Server, path: &str) -> Ws {
    let url = format!("wss://{}{path}", server.https_addr());
    let connector = Connector::Rustls(ca.client_config());
    let connect =
        tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector));
    let (ws, _) = tokio::time::timeout(STEP, connect)
        .await
        .expect("wss connect in time")
        .expect("wss connect");
    ws
}

/// The certificate the TLS listener presents to a new handshake.
async fn presented(ca: &Ca, server: &Server) -> CertificateDer<'static> {
    let tcp = TcpStream::connect(server.https_addr()).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(ca.client_config());
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio::time::timeout(STEP, connector.connect(name, tcp))
        .await
        .unwrap()
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

#[tokio::test]
async fn wss_relays_byte_exact_beside_plain_ws() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path(), &ca.leaf());
    let server = tls_server(dir.path(), &[]);
    let mut publisher = wss(&ca, &server, "/tls/k/publish").await;
    let mut secure = wss(&ca, &server, "/tls/k/receive").await;
    let mut plain = ws(&server.url("/tls/k/receive")).await;
    server.wait_playing(2).await;
    for i in 0..200u64 {
        send(&mut publisher, payload(i, 1 + (i as usize * 997) % 200_000)).await;
    }
    for i in 0..200u64 {
        let want = payload(i, 1 + (i as usize * 997) % 200_000);
        assert!(next_binary(&mut secure).await == want, "wss chunk {i}");
        assert!(next_binary(&mut plain).await == want, "ws chunk {i}");
    }
    // The built-in test page over https.
    let connector = tokio_rustls::TlsConnector::from(ca.client_config());
    let tcp = TcpStream::connect(server.https_addr()).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(STEP, tls.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("<html"),
        "the test page over https: {response}"
    );
}

#[tokio::test]
async fn limits_and_whitelists_apply_on_the_tls_listener_too() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path(), &ca.leaf());
    let server = tls_server(
        dir.path(),
        &[
            ("MAX_IP_CONCURRENT_CONNECTIONS", "1"),
            ("PLAY_WHITELIST", "10.0.0.0/8"),
        ],
    );
    let refused = |ca: &Ca| {
        let url = format!("wss://{}/lim/k/receive", server.https_addr());
        let connector = Some(Connector::Rustls(ca.client_config()));
        async move {
            match tokio_tungstenite::connect_async_tls_with_config(url, None, false, connector)
                .await
            {
                Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                    let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default())
                        .into_owned();
                    (resp.status().as_u16(), body)
                }
                other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
            }
        }
    };
    assert_eq!(
        refused(&ca).await,
        (403, "Cannot play: Not whitelisted.".to_owned())
    );
    let _publisher = wss(&ca, &server, "/lim/k/publish").await;
    assert_eq!(refused(&ca).await, (429, "Too many requests.".to_owned()));
}

#[tokio::test]
async fn reload_swaps_the_certificate_without_dropping_streams() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let first = ca.leaf();
    write_pair(dir.path(), &first);
    let server = tls_server(dir.path(), &[]);
    assert_eq!(presented(&ca, &server).await, first.der);
    let mut publisher = wss(&ca, &server, "/reload/k/publish").await;
    let mut receiver = wss(&ca, &server, "/reload/k/receive").await;
    server.wait_playing(1).await;
    let second = ca.leaf();
    let mut seq = 0u64;
    let streamer = async {
        for _ in 0..60 {
            send(&mut publisher, seq.to_be_bytes().to_vec()).await;
            assert_eq!(next_binary(&mut receiver).await, seq.to_be_bytes());
            seq += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let swapper = async {
        tokio::time::sleep(Duration::from_millis(600)).await;
        write_pair(dir.path(), &second);
    };
    tokio::join!(streamer, swapper);
    let reloaded = "ws_stream_tls_reloads_total{outcome=\"reloaded\"}";
    let rejected = "ws_stream_tls_reloads_total{outcome=\"rejected\"}";
    server.wait_metric(reloaded, |n| n == 1.0).await;
    assert_eq!(presented(&ca, &server).await, second.der);
    // A broken replacement is refused; the second certificate stays.
    let before = server.metric(rejected);
    std::fs::write(
        dir.path().join("cert.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    server.wait_metric(rejected, |n| n > before).await;
    assert_eq!(presented(&ca, &server).await, second.der);
    // A mismatched pair too.
    let third = ca.leaf();
    let before = server.metric(rejected);
    std::fs::write(dir.path().join("cert.pem"), &third.cert_pem).unwrap();
    server.wait_metric(rejected, |n| n > before).await;
    assert_eq!(presented(&ca, &server).await, second.der);
    assert_eq!(server.metric(reloaded), 1.0);
    // The stream opened before everything still flows.
    send(&mut publisher, vec![7; 1000]).await;
    assert_eq!(next_binary(&mut receiver).await, vec![7; 1000]);
}

#[test]
fn unusable_pairs_stop_the_server_at_start_up() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem").display().to_string();
    let (code, out) = run_to_exit(&[
        ("SSL_CERT", &missing),
        ("SSL_KEY", &missing),
        ("SSL_PORT", "0"),
    ]);
    assert_ne!(code, 0);
    assert!(out.contains("missing.pem"), "{out}");
    let a = ca.leaf();
    let b = ca.leaf();
    std::fs::write(dir.path().join("a.pem"), &a.cert_pem).unwrap();
    std::fs::write(dir.path().join("b.key"), &b.key_pem).unwrap();
    let cert = dir.path().join("a.pem").display().to_string();
    let key = dir.path().join("b.key").display().to_string();
    let (code, out) = run_to_exit(&[("SSL_CERT", &cert), ("SSL_KEY", &key), ("SSL_PORT", "0")]);
    assert_ne!(code, 0);
    assert!(out.contains("do not form a usable pair"), "{out}");
    std::fs::write(dir.path().join("empty.pem"), "").unwrap();
    let empty = dir.path().join("empty.pem").display().to_string();
    let (code, out) = run_to_exit(&[("SSL_CERT", &empty), ("SSL_KEY", &key), ("SSL_PORT", "0")]);
    assert_ne!(code, 0);
    assert!(out.contains("empty.pem"), "{out}");
}

/// The callback and the webhook over `https://`, verified against the system's
/// roots: here a CA the process trusts through `SSL_CERT_FILE` (which the
/// system-roots loader honours). An endpoint whose certificate that CA did
/// not sign is refused: the callback denies, nothing is sent in clear.
#[tokio::test(flavor = "multi_thread")]
async fn https_callback_and_webhook_are_verified_against_the_system_roots() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("roots.pem");
    std::fs::write(&roots, ca.issuer.pem()).unwrap();
    let roots = roots.display().to_string();
    let mut hook = Hook::start_tls(Reply::AllowKey("good"), ca.leaf().server_config()).await;
    let auth = format!("https://127.0.0.1:{}/auth", hook.addr.port());
    let events = format!("https://localhost:{}/events", hook.addr.port());
    let mut server = Server::process(&[
        ("SSL_CERT_FILE", roots.as_str()),
        ("AUTH_HTTP_URL", auth.as_str()),
        ("EVENT_WEBHOOK_URL", events.as_str()),
    ]);
    let publisher = ws(&server.url("/cam/good/publish")).await;
    let mut targets = Vec::new();
    while targets.len() < 2 {
        let r = hook.recv().await;
        targets.push(r.target);
    }
    targets.sort();
    assert_eq!(targets, ["/auth", "/events"]);
    drop(publisher);
    server
        .wait_metric("ws_stream_channels_active", |n| n == 0.0)
        .await;
    assert_eq!(
        try_ws(&server.url("/cam/bad/publish"))
            .await
            .err()
            .map(|e| e.0),
        Some(403)
    );
    let _ = server.stop();

    // Another CA's certificate: the TLS handshake fails, the request is denied.
    let stranger = Ca::new();
    let hook = Hook::start_tls(Reply::Status(200), stranger.leaf().server_config()).await;
    let auth = format!("https://127.0.0.1:{}/auth", hook.addr.port());
    let server = Server::process(&[
        ("SSL_CERT_FILE", roots.as_str()),
        ("AUTH_HTTP_URL", auth.as_str()),
    ]);
    assert_eq!(
        try_ws(&server.url("/cam/good/publish"))
            .await
            .err()
            .map(|e| e.0),
        Some(403)
    );
    server
        .wait_metric("ws_stream_auth_requests_total{outcome=\"error\"}", |n| {
            n >= 1.0
        })
        .await;
    assert_eq!(
        hook.count(),
        0,
        "no request may reach an unverified endpoint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_over_https_is_the_same_stream() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path(), &ca.leaf());
    let server = tls_server(dir.path(), &[]);
    let chunks: Vec<Vec<u8>> = (0..50u64)
        .map(|i| payload(i, 1 + (i as usize * 7919) % 150_000))
        .collect();
    let mut publisher = wss(&ca, &server, "/tls/k/publish").await;
    send(&mut publisher, chunks[0].clone()).await;
    let connector = tokio_rustls::TlsConnector::from(ca.client_config());
    let tcp = TcpStream::connect(server.https_addr()).await.unwrap();
    let tls = tokio::time::timeout(
        STEP,
        connector.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp),
    )
    .await
    .expect("handshake in time")
    .expect("handshake");
    let reader = common::http::request(tls, "GET", "/tls/k/play").await;
    assert_eq!(reader.status, 200);
    assert_eq!(
        reader.header("content-type"),
        Some("application/octet-stream")
    );
    let reader = tokio::spawn(reader.collect());
    for chunk in &chunks[1..] {
        send(&mut publisher, chunk.clone()).await;
    }
    close(publisher).await;
    let (body, end) = reader.await.unwrap();
    assert_eq!(end, common::http::BodyEnd::Clean);
    assert!(body == chunks.concat(), "byte-exact over https");
}

#[tokio::test]
async fn an_edge_pulls_over_wss_verified_against_the_system_roots() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path(), &ca.leaf());
    let origin = tls_server(dir.path(), &[]);
    let roots = dir.path().join("roots.pem");
    std::fs::write(&roots, ca.issuer.pem()).unwrap();
    let roots = roots.display().to_string();
    let origins = format!("wss://127.0.0.1:{}", origin.https_addr().port());
    let edge = Server::process(&[
        ("SSL_CERT_FILE", roots.as_str()),
        ("ORIGIN_URLS", origins.as_str()),
        ("METRICS_ADDRESS", "127.0.0.1:0"),
    ]);
    let mut publisher = ws(&origin.url("/cascade/k/publish")).await;
    let mut receiver = ws(&edge.url("/cascade/k/receive")).await;
    // The edge's upstream waits at the origin like any receiver.
    origin.wait_playing(1).await;
    assert_eq!(
        origin.metric("ws_stream_connections{kind=\"receive\"}"),
        1.0
    );
    for i in 0..50u64 {
        send(
            &mut publisher,
            payload(i, 1 + (i as usize * 7919) % 100_000),
        )
        .await;
    }
    for i in 0..50u64 {
        let want = payload(i, 1 + (i as usize * 7919) % 100_000);
        assert!(
            next_binary(&mut receiver).await == want,
            "chunk {i} over wss"
        );
    }
    close(publisher).await;
    assert_eq!(expect_close(&mut receiver).await, Some(1000));

    // An edge that trusts another CA never gets the stream: the handshake fails.
    let stranger = Ca::new();
    let other_roots = dir.path().join("other.pem");
    std::fs::write(&other_roots, stranger.issuer.pem()).unwrap();
    let other_roots = other_roots.display().to_string();
    let wary = Server::process(&[
        ("SSL_CERT_FILE", other_roots.as_str()),
        ("ORIGIN_URLS", origins.as_str()),
        ("METRICS_ADDRESS", "127.0.0.1:0"),
    ]);
    let mut publisher = ws(&origin.url("/cascade/k/publish")).await;
    let _waiting = ws(&wary.url("/cascade/k/receive")).await;
    wary.wait_metric(
        "ws_stream_edge_upstream_failures_total{reason=\"connect\"}",
        |n| n >= 1.0,
    )
    .await;
    send(&mut publisher, payload(1, 1000)).await;
    // Only the publisher is on the origin: no upstream got through.
    assert_eq!(
        origin.metric("ws_stream_connections{kind=\"receive\"}"),
        0.0
    );
}
