//! The server's own HTTP requests (the authorisation callback, the event
//! webhook): one POST of a JSON body per connection, over TCP or TLS verified
//! against the system's roots, with hyper's HTTP/1.1 client. Credentials in the
//! URL (`https://user:pass@host/…`) are sent as HTTP Basic authorisation. The
//! caller bounds each request in time; only the answer's status is read.

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT};
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use url::{Host, Url};

/// Why a request got no status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PostError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("https URL but no TLS roots could be loaded")]
    NoTls,
    #[error("bad URL")]
    Url,
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
}

/// A client for one kind of request; the TLS roots are loaded once.
#[derive(Clone)]
pub(crate) struct HttpClient {
    tls: Option<TlsConnector>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl HttpClient {
    /// A client for `url`; for `https` the system roots are loaded now (a
    /// failure is logged and every request then fails: closed, not open).
    pub(crate) fn for_url(url: &Url) -> Self {
        let tls = (url.scheme() == "https").then(tls_connector).flatten();
        Self { tls }
    }

    /// POSTs `body` as JSON to `url`; the answer's status.
    pub(crate) async fn post_json(&self, url: &Url, body: Bytes) -> Result<StatusCode, PostError> {
        let port = url.port_or_known_default().ok_or(PostError::Url)?;
        let (tcp, name) = match url.host() {
            Some(Host::Domain(d)) => (TcpStream::connect((d, port)).await, server_name_dns(d)),
            Some(Host::Ipv4(ip)) => (
                TcpStream::connect((ip, port)).await,
                server_name_ip(ip.into()),
            ),
            Some(Host::Ipv6(ip)) => (
                TcpStream::connect((ip, port)).await,
                server_name_ip(ip.into()),
            ),
            None => return Err(PostError::Url),
        };
        let tcp = tcp.map_err(PostError::Connect)?;
        let _ = tcp.set_nodelay(true);
        let request = request(url, body)?;
        if url.scheme() != "https" {
            return exchange(tcp, request).await;
        }
        let (Some(tls), Some(name)) = (&self.tls, name) else {
            return Err(PostError::NoTls);
        };
        let stream = tls.connect(name, tcp).await.map_err(PostError::Tls)?;
        exchange(stream, request).await
    }
}

fn server_name_dns(d: &str) -> Option<rustls::pki_types::ServerName<'static>> {
    rustls::pki_types::ServerName::try_from(d.to_owned()).ok()
}

fn server_name_ip(ip: IpAddr) -> Option<rustls::pki_types::ServerName<'static>> {
    Some(rustls::pki_types::ServerName::IpAddress(ip.into()))
}

fn request(url: &Url, body: Bytes) -> Result<Request<Full<Bytes>>, PostError> {
    let mut target = url.path().to_owned();
    if let Some(query) = url.query() {
        target.push('?');
        target.push_str(query);
    }
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => return Err(PostError::Url),
    };
    let mut builder = Request::post(target).header(HOST, host);
    if let Some(credentials) = basic_credentials(url) {
        builder = builder.header(AUTHORIZATION, credentials);
    }
    builder
        .header(CONTENT_TYPE, "application/json")
        .header(CONTENT_LENGTH, body.len())
        .header(
            USER_AGENT,
            concat!("ws-stream-server/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(body))
        .map_err(|_| PostError::Url)
}

/// `Basic …` for a URL with a user name or a password (RFC 7617; the URL's
/// percent-encoding undone first, as browsers and curl do).
fn basic_credentials(url: &Url) -> Option<String> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| percent_encoding::percent_decode_str(s).collect::<Vec<u8>>();
    let mut pair = decode(url.username());
    pair.push(b':');
    pair.extend(decode(url.password().unwrap_or("")));
    Some(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    ))
}

async fn exchange<S>(io: S, request: Request<Full<Bytes>>) -> Result<StatusCode, PostError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let send = sender.send_request(request);
    tokio::pin!(send);
    let response = tokio::select! {
        biased;
        response = &mut send => response?,
        closed = conn => {
            // The connection may end right after handing over the answer.
            closed?;
            send.await?
        }
    };
    Ok(response.status())
}

fn tls_connector() -> Option<TlsConnector> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        tracing::error!(errors = ?loaded.errors, "no system TLS roots: https requests will fail");
        return None;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tracing::error!(error = %e, "TLS client configuration"))
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Some(TlsConnector::from(Arc::new(config)))
}
