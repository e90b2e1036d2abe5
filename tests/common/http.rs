//! A plain HTTP/1.1 client (hyper's) for the `play` answers: one request per
//! connection, every await bounded.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::STEP;

/// An answer whose body is read as it comes.
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Incoming,
    _conn: tokio::task::JoinHandle<()>,
}

/// How a body ended.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyEnd {
    /// The last chunk came: the stream ended cleanly.
    Clean,
    /// The connection ended without the last chunk.
    Cut,
}

/// Sends `method path` on `io` and waits for the answer's head.
pub async fn request<I>(io: I, method: &str, path: &str) -> Answer
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handshake = hyper::client::conn::http1::handshake(TokioIo::new(io));
    let (mut sender, conn) = tokio::time::timeout(STEP, handshake)
        .await
        .expect("handshake in time")
        .expect("handshake");
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("Host", "127.0.0.1")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = tokio::time::timeout(Duration::from_secs(30), sender.send_request(req))
        .await
        .expect("answer head in time")
        .expect("answer head");
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
        _conn: conn,
    }
}

/// `GET path` over plain TCP.
pub async fn get(addr: std::net::SocketAddr, path: &str) -> Answer {
    request(connect(addr, None).await, "GET", path).await
}

/// A TCP connection to `addr`, its receive buffer set to `recv_buffer` bytes when given.
pub async fn connect(addr: std::net::SocketAddr, recv_buffer: Option<u32>) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
    }
    tokio::time::timeout(STEP, socket.connect(addr))
        .await
        .expect("connect in time")
        .expect("connect")
}

impl Drop for Answer {
    fn drop(&mut self) {
        // A dropped answer closes its connection (the reader leaves).
        self._conn.abort();
    }
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The whole body as text (for refusals).
    pub async fn text(self) -> String {
        let (bytes, end) = self.collect().await;
        assert_eq!(end, BodyEnd::Clean, "refusal body cut");
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Reads the body to its end (each frame within 30 s).
    pub async fn collect(mut self) -> (Vec<u8>, BodyEnd) {
        let mut all = Vec::new();
        loop {
            match self.next_data().await {
                Some(Ok(data)) => all.extend_from_slice(&data),
                Some(Err(_)) => return (all, BodyEnd::Cut),
                None => return (all, BodyEnd::Clean),
            }
        }
    }

    /// The next data of the body (`None` at its clean end).
    pub async fn next_data(&mut self) -> Option<Result<Bytes, hyper::Error>> {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), self.body.frame())
                .await
                .expect("body stalled")?;
            match frame {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => return Some(Ok(data)),
                    Err(_) => continue,
                },
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
