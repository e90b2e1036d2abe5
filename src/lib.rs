//! ws-stream-server: a live-media relay over WebSockets.
//!
//! A publisher sends binary messages (chunks) to `/{channel}/{key}/publish`.
//! [`run`] (in `server`) owns the lifecycle: listeners, the drain, shutdown.
//! `http` serves each connection with hyper and builds every answer,
//! `front_door` routes paths and maps refusals to answers, `admission` runs
//! the checks of a streaming request and spawns its session, `hub` claims the
//! channel and keeps each broadcast's chunk log (the cache and the receivers'
//! shared queue), and `session` runs the WebSocket loops: the publisher's
//! reader appends chunks, each receiver's writer task sends them from its own
//! cursor; `play` serves the same cursor as one chunked HTTP body for players
//! without our protocol. `config` reads the environment (and `.env`), `fdlimit` raises the
//! open-files limit, `access` holds the whitelists and
//! the per-IP limit, `control` is the optional coordinator link, `media`
//! follows the container for late joiners, `metrics` is the registry, `edge`
//! pulls channels without a local publisher from origin servers (`ORIGIN_URLS`).
//! The wire protocol is stated in `docs/PROTOCOL.md`.

mod access;
mod admission;
mod api;
mod auth;
pub mod cli;
mod clock;
pub mod config;
pub mod control;
mod edge;
pub mod fdlimit;
mod front_door;
mod http;
mod hub;
pub mod logging;
pub mod media;
mod metrics;
mod outbound;
mod play;
mod play_lag;
mod server;
mod session;
mod signal;
mod state;
mod test_client;
mod tls;
mod webhook;

pub use server::{banner, bind, run, BindError, Listeners, Observer, Server, StartError};
/// The server's frame writer, public so the bench's ceiling relay writes exactly as the server does.
pub use session::frames;
pub use signal::terminated;
