//! Log set-up: one line per event on standard output, with time and level.
//!
//! Request lines use the target `request` and are shown only with
//! `LOG_REQUESTS`; `LOG_DEBUG` adds debug lines (chunk sizes, bitrate,
//! control messages). Keys and secrets are never passed to the logger.

use std::io::IsTerminal;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

/// Installs the global subscriber; call once, before anything logs.
pub fn init(log_requests: bool, log_debug: bool) {
    let level = if log_debug {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    };
    let request_level = if log_requests {
        level
    } else {
        LevelFilter::WARN
    };
    let filter = Targets::new()
        .with_default(level)
        .with_target("request", request_level)
        .with_target("hyper", LevelFilter::INFO)
        .with_target("h2", LevelFilter::INFO);
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stdout().is_terminal())
        .with_writer(std::io::stdout);
    tracing_subscriber::registry().with(filter).with(fmt).init();
}
