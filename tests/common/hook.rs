//! A scripted HTTP endpoint on 127.0.0.1 (hyper): the authorisation callback
//! and the event webhook the server under test POSTs to. It records every
//! request and answers as the test says.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::STEP;

/// How the endpoint answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// This status, at once.
    Status(u16),
    /// 200 when the JSON body's `key` is this, else 403.
    AllowKey(&'static str),
    /// No answer until [`Hook::release`] (then 200).
    Hang,
    /// 200 after this long.
    Delay(Duration),
}

/// One request the endpoint got.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
    pub raw: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct Hook {
    pub addr: SocketAddr,
    requests: mpsc::UnboundedReceiver<Recorded>,
    reply: Arc<Mutex<Reply>>,
    arrived: Arc<AtomicUsize>,
    release: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Hook {
    pub async fn start(reply: Reply) -> Hook {
        Self::start_with(reply, None).await
    }

    /// The same endpoint behind TLS (`https://`), with this server configuration.
    pub async fn start_tls(reply: Reply, tls: Arc<rustls::ServerConfig>) -> Hook {
        Self::start_with(reply, Some(tokio_rustls::TlsAcceptor::from(tls))).await
    }

    async fn start_with(reply: Reply, tls: Option<tokio_rustls::TlsAcceptor>) -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind hook");
        let addr = listener.local_addr().unwrap();
        let (tx, requests) = mpsc::unbounded_channel();
        let reply = Arc::new(Mutex::new(reply));
        let arrived = Arc::new(AtomicUsize::new(0));
        let release = CancellationToken::new();
        let (r, a, rel) = (reply.clone(), arrived.clone(), release.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (tx, r, a, rel) = (tx.clone(), r.clone(), a.clone(), rel.clone());
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (tx, r, a, rel) = (tx.clone(), r.clone(), a.clone(), rel.clone());
                        async move {
                            let recorded = record(req).await;
                            let key = recorded.body["key"].as_str().map(str::to_owned);
                            let _ = tx.send(recorded);
                            a.fetch_add(1, Ordering::SeqCst);
                            let reply = r.lock().unwrap().clone();
                            let status = match reply {
                                Reply::Status(s) => s,
                                Reply::AllowKey(k) => {
                                    if key.as_deref() == Some(k) {
                                        200
                                    } else {
                                        403
                                    }
                                }
                                Reply::Hang => {
                                    rel.cancelled().await;
                                    200
                                }
                                Reply::Delay(d) => {
                                    tokio::time::sleep(d).await;
                                    200
                                }
                            };
                            let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
                            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    let _ = match tls {
                        None => http.serve_connection(TokioIo::new(tcp), service).await,
                        Some(tls) => match tls.accept(tcp).await {
                            Ok(stream) => {
                                http.serve_connection(TokioIo::new(stream), service).await
                            }
                            Err(_) => return,
                        },
                    };
                });
            }
        });
        Hook {
            addr,
            requests,
            reply,
            arrived,
            release,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    /// Hanging requests answer 200 now.
    pub fn release(&self) {
        self.release.cancel();
    }

    /// Requests that arrived so far.
    pub fn count(&self) -> usize {
        self.arrived.load(Ordering::SeqCst)
    }

    pub async fn wait_count(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + STEP;
        while self.count() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{n} requests never arrived"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The next request, in arrival order.
    pub async fn recv(&mut self) -> Recorded {
        tokio::time::timeout(STEP, self.requests.recv())
            .await
            .expect("no request in time")
            .expect("hook stopped")
    }

    /// Every request recorded so far, without waiting.
    pub fn drain(&mut self) -> Vec<Recorded> {
        let mut out = Vec::new();
        while let Ok(r) = self.requests.try_recv() {
            out.push(r);
        }
        out
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.release.cancel();
        self.task.abort();
    }
}

async fn record(req: Request<Incoming>) -> Recorded {
    let method = req.method().to_string();
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(String::new, |p| p.to_string());
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let bytes = tokio::time::timeout(STEP, req.into_body().collect())
        .await
        .ok()
        .and_then(Result::ok)
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let raw = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Recorded {
        method,
        target,
        headers,
        body,
        raw,
    }
}
