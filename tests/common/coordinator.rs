//! A scripted coordinator: a WebSocket server on 127.0.0.1 that records the
//! control connection's path and headers and lets a test read and write
//! control messages.
// The handshake callback's error type is tungstenite's, large by design.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use ws_stream_server::control::codec::{self, ControlMessage};

use super::STEP;

pub struct Coordinator {
    pub addr: SocketAddr,
    conns: mpsc::Receiver<Link>,
    task: tokio::task::JoinHandle<()>,
}

pub struct Link {
    pub path: String,
    pub headers: Vec<(String, String)>,
    ws: WebSocketStream<TcpStream>,
}

impl Coordinator {
    pub async fn start() -> Coordinator {
        Self::start_on("127.0.0.1:0").await
    }

    pub async fn start_on(addr: &str) -> Coordinator {
        let listener = TcpListener::bind(addr).await.expect("bind coordinator");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let seen = Arc::new(Mutex::new((String::new(), Vec::new())));
                let record = seen.clone();
                let callback = move |req: &Request, resp: Response| {
                    let headers = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                        .collect();
                    *record.lock().unwrap() = (req.uri().to_string(), headers);
                    Ok(resp)
                };
                if let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await {
                    let (path, headers) = seen.lock().unwrap().clone();
                    if tx.send(Link { path, headers, ws }).await.is_err() {
                        return;
                    }
                }
            }
        });
        Coordinator {
            addr,
            conns: rx,
            task,
        }
    }

    pub fn base_url(&self) -> String {
        format!("ws://{}/some/path?ignored=1", self.addr)
    }

    /// The next control connection from the server.
    pub async fn link(&mut self) -> Link {
        self.link_within(STEP).await
    }

    /// The next control connection, within `limit`.
    pub async fn link_within(&mut self, limit: Duration) -> Link {
        tokio::time::timeout(limit, self.conns.recv())
            .await
            .expect("server did not connect to the coordinator")
            .expect("coordinator stopped")
    }

    pub async fn no_link_within(&mut self, limit: Duration) {
        if let Ok(Some(_)) = tokio::time::timeout(limit, self.conns.recv()).await {
            panic!("unexpected control connection");
        }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Link {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The next message other than HEARTBEAT.
    pub async fn recv(&mut self) -> ControlMessage {
        loop {
            let msg = self.recv_any().await;
            if msg.method() != "HEARTBEAT" {
                return msg;
            }
        }
    }

    pub async fn recv_any(&mut self) -> ControlMessage {
        loop {
            let next = tokio::time::timeout(STEP, self.ws.next())
                .await
                .expect("no control message in time");
            match next {
                Some(Ok(Message::Text(t))) => return codec::parse(t.as_str()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("control link: unexpected {other:?}"),
            }
        }
    }

    /// Asserts nothing but heartbeats arrives within `limit`.
    pub async fn quiet_for(&mut self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while let Ok(next) = tokio::time::timeout_at(deadline, self.ws.next()).await {
            match next {
                Some(Ok(Message::Text(t))) => {
                    let msg = codec::parse(t.as_str());
                    assert_eq!(msg.method(), "HEARTBEAT", "unexpected {t:?}");
                }
                Some(Ok(_)) => {}
                other => panic!("control link ended: {other:?}"),
            }
        }
    }

    pub async fn send(&mut self, msg: &ControlMessage) {
        self.send_raw(Message::Text(codec::serialize(msg).into()))
            .await;
    }

    pub async fn send_raw(&mut self, msg: Message) {
        tokio::time::timeout(STEP, self.ws.send(msg))
            .await
            .expect("send timed out")
            .expect("send to server");
    }

    /// Waits until the server closes this link.
    pub async fn closed(&mut self) {
        tokio::time::timeout(STEP, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await
        .expect("link not closed in time");
    }
}
