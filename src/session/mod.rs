//! WebSocket sessions after the upgrade: a reader loop (chunks in, liveness,
//! size bound) and a writer task (heartbeats, replies, and for receivers the
//! feed of chunks) per connection.

mod activity;
pub mod frames;
mod reader;
mod signals;
mod trickle;
mod writer;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use self::activity::Activity;
pub(crate) use self::signals::Close;
use self::signals::{Side, Signals};
use crate::hub::{Kind, PublisherClaim, Subscription};
use crate::metrics::{Metrics, Open};

pub(crate) type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
pub(crate) type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// A session in log lines: `#{id} ({ip})`, as the original's request lines.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tag {
    pub(crate) id: u64,
    pub(crate) ip: IpAddr,
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} ({})", self.id, self.ip)
    }
}

/// Who the session is, for logs (never the key).
#[derive(Debug, Clone)]
pub(crate) struct SessionInfo {
    pub(crate) tag: Tag,
    pub(crate) channel: String,
    pub(crate) kind: Kind,
    pub(crate) metrics: Arc<Metrics>,
}

/// Timers and bounds of one session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub heartbeat: Duration,
    pub idle_timeout: Duration,
    pub max_message_bytes: usize,
}

/// Encrypted bytes rustls may hold for a `wss://` session whose socket is full
/// (its default is 64 KiB): each vectored write of a batch then encrypts up to
/// this much before one `writev` to the socket (BENCHMARKS.md, "TLS").
const TLS_SEND_BUFFER: usize = 256 * 1024;

/// Splits an upgraded connection into its read and write halves: plain TCP and
/// TLS streams are taken out of hyper's wrapper, anything else stays in it.
fn split(upgraded: Upgraded, activity: &Activity) -> (BoxRead, BoxWrite) {
    let (read, write): (BoxRead, BoxWrite) = match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            let (r, w) = parts.io.into_inner().into_split();
            // Copy what hyper read ahead: its `Bytes` would pin hyper's whole read buffer.
            let buffered = std::io::Cursor::new(bytes::Bytes::copy_from_slice(&parts.read_buf));
            (Box::new(activity.track(buffered.chain(r))), Box::new(w))
        }
        Err(upgraded) => match upgraded
            .downcast::<TokioIo<tokio_rustls::server::TlsStream<TcpStream>>>()
        {
            Ok(parts) => {
                let mut tls = parts.io.into_inner();
                tls.get_mut().1.set_buffer_limit(Some(TLS_SEND_BUFFER));
                let buffered = std::io::Cursor::new(bytes::Bytes::copy_from_slice(&parts.read_buf));
                let (r, w) = tokio::io::split(tls);
                (Box::new(activity.track(buffered.chain(r))), Box::new(w))
            }
            Err(upgraded) => {
                let (r, w) = tokio::io::split(TokioIo::new(upgraded));
                (Box::new(activity.track(r)), Box::new(w))
            }
        },
    };
    (read, write)
}

/// Runs a publisher until its connection ends; dropping the claim then ends the session.
pub(crate) async fn run_publisher(
    upgraded: Upgraded,
    info: SessionInfo,
    claim: PublisherClaim,
    stream_id: Option<String>,
    limits: Limits,
    shutdown: CancellationToken,
) -> Close {
    let _open = Open::connection(&info.metrics, info.kind.as_str());
    let activity = Activity::new();
    let (read, write) = split(upgraded, &activity);
    let broadcast = claim.activate(stream_id);
    let kill = claim.kill_token();
    let signals = Arc::new(Signals::default());
    let writer = tokio::spawn(writer::run(
        write,
        writer::Source::None,
        signals.clone(),
        limits,
        info.clone(),
        shutdown.clone(),
    ));
    let input = reader::Input::Parser(reader::parser(read));
    let read_loop = reader::run(input, &activity, Some(broadcast), &signals, limits, &info);
    tokio::select! {
        () = read_loop => {}
        () = signals.closed(Side::Reader) => {}
        () = kill.cancelled() => signals.close(Close::KILLED),
        () = shutdown.cancelled() => signals.close(Close::SHUTDOWN),
    }
    signals.close(Close::END_OF_STREAM);
    // The writer sends the close frame; it is bounded by its own timeout.
    let _ = writer.await;
    drop(claim);
    let reason = signals.reason();
    tracing::info!(target: "request", channel = %info.channel, reason = reason.reason, "{} publish end", info.tag);
    reason
}

/// Runs a receiver or probe until its feed ends or its connection does.
pub(crate) async fn run_receiver(
    upgraded: Upgraded,
    info: SessionInfo,
    subscription: Subscription,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let _open = Open::connection(&info.metrics, info.kind.as_str());
    let activity = Activity::new();
    let (read, write) = split(upgraded, &activity);
    let signals = Arc::new(Signals::default());
    let source = writer::Source::from(subscription);
    let writer = tokio::spawn(writer::run(
        write,
        source,
        signals.clone(),
        limits,
        info.clone(),
        shutdown.clone(),
    ));
    let input = reader::Input::Trickle(trickle::Trickle::new(read));
    let read_loop = reader::run(input, &activity, None, &signals, limits, &info);
    tokio::select! {
        () = read_loop => {}
        () = signals.closed(Side::Reader) => {}
        () = shutdown.cancelled() => signals.close(Close::SHUTDOWN),
    }
    let _ = writer.await;
    tracing::info!(target: "request", channel = %info.channel, kind = info.kind.as_str(), reason = signals.reason().reason, "{} play end", info.tag);
}
