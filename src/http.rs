//! The one place HTTP answers are built, and the one function that serves an
//! accepted connection with hyper (plain or TLS, public or operator listener).
//! An answer's body is whole, or the `play` stream (src/play.rs).

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioTimer;
use tokio_util::sync::CancellationToken;

pub(crate) type Answer = Response<Body>;

/// The body of an answer: whole, or a live stream.
#[derive(Debug)]
pub(crate) enum Body {
    Whole(Full<Bytes>),
    Play(Box<crate::play::PlayBody>),
}

impl Default for Body {
    fn default() -> Self {
        Self::Whole(Full::default())
    }
}

impl hyper::body::Body for Body {
    type Data = crate::play::Batch;
    type Error = crate::play::Cut;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        match self.get_mut() {
            Self::Whole(full) => std::pin::Pin::new(full).poll_frame(cx).map(|frame| {
                frame.map(|f| Ok(f.unwrap_or_else(|n| match n {}).map_data(Into::into)))
            }),
            Self::Play(play) => std::pin::Pin::new(&mut **play).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Whole(full) => full.is_end_stream(),
            Self::Play(play) => play.is_end_stream(),
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Self::Whole(full) => full.size_hint(),
            Self::Play(_) => hyper::body::SizeHint::default(),
        }
    }
}

/// Set on every request of a connection: cancelling it drops the connection at
/// once, without finishing the answer (a `play` reader cut for lagging).
#[derive(Debug, Clone)]
pub(crate) struct ConnCut(pub(crate) CancellationToken);

pub(crate) const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// An answer with a static body.
pub(crate) fn text(status: StatusCode, body: &'static str) -> Answer {
    with_body(status, TEXT_PLAIN, Bytes::from_static(body.as_bytes()))
}

/// An answer with any body and content type.
pub(crate) fn with_body(status: StatusCode, content_type: &'static str, body: Bytes) -> Answer {
    let mut response = Response::new(Body::Whole(Full::new(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A page of the built-in test client (revalidated on every load).
pub(crate) fn asset(content_type: &'static str, body: &'static [u8]) -> Answer {
    let mut response = with_body(StatusCode::OK, content_type, Bytes::from_static(body));
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Most headers one request head may carry (more: 431). hyper's default is 100.
pub(crate) const MAX_HEADERS: usize = 256;

/// Bounds of one HTTP connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    /// Time to send a request head (the first one and each later one).
    pub(crate) head_timeout: Duration,
    pub(crate) max_head_bytes: usize,
}

/// Serves HTTP/1.1 on `io` until the client leaves or `drain` fires (then the
/// connection finishes its current request and closes). `head_timeout` runs
/// from the connection's start and again after each answer, so it is also the
/// keep-alive idle timeout.
pub(crate) async fn serve<I, H, F>(
    io: I,
    ip: IpAddr,
    limits: ConnLimits,
    drain: &CancellationToken,
    handler: H,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Send + Clone + 'static,
    F: Future<Output = Answer> + Send,
{
    let cut = CancellationToken::new();
    let conn_cut = ConnCut(cut.clone());
    let service = service_fn(move |mut req: Request<Incoming>| {
        let handler = handler.clone();
        req.extensions_mut().insert(conn_cut.clone());
        async move { Ok::<_, Infallible>(handler(req).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.head_timeout)
        .max_buf_size(limits.max_head_bytes)
        // hyper sizes two arrays by this on every parse of a head (after every
        // read of an unfinished one), so it stays a small constant; the head's
        // size is bounded by `max_buf_size`.
        .max_headers(MAX_HEADERS);
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = drain.cancelled() => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                result = conn.as_mut() => result,
                () = cut.cancelled() => Ok(()),
            }
        }
        () = cut.cancelled() => Ok(()),
    };
    if let Err(e) = result {
        tracing::debug!(client.addr = %ip, error = %e, "http connection ended with an error");
    }
}
