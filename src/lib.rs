//! ws-stream-server: a live-media relay over WebSockets.
//!
//! A publisher sends binary messages (chunks) to `/{channel}/{key}/publish`;
//! `server` accepts the connection, `front_door` decides the HTTP answer,
//! `hub` claims the channel and keeps each session's chunk log (the cache and
//! the receivers' shared queue), and `session` runs the WebSocket loops: the
//! publisher's reader appends chunks, each receiver's writer task sends them
//! from its own cursor. `config` reads the environment, `access` holds the
//! whitelists and the per-IP limit, `control` is the optional coordinator
//! link, `logging` sets up the log lines.
#![forbid(unsafe_code)]

pub mod access;
pub mod cli;
pub mod config;
pub mod control;
pub mod front_door;
pub mod hub;
pub mod logging;
pub mod media;
pub mod metrics;
pub mod server;
pub mod session;
pub mod test_client;
pub mod tls;

pub use server::{banner, serve, AppState};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::TcpListener;

/// Binds `address:port`; with no address, all interfaces (IPv6 dual-stack, else IPv4).
pub async fn bind(address: Option<IpAddr>, port: u16) -> std::io::Result<TcpListener> {
    match address {
        Some(ip) => TcpListener::bind(SocketAddr::new(ip, port)).await,
        None => {
            match TcpListener::bind(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port)).await {
                Ok(listener) => Ok(listener),
                Err(_) => {
                    TcpListener::bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port)).await
                }
            }
        }
    }
}
