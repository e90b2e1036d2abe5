//! The ws-stream-server binary: configuration, logging, listeners, serve, shutdown.

use std::process::ExitCode;
use std::sync::Arc;

use tokio::net::TcpListener;
use ws_stream_server::config::Config;
use ws_stream_server::tls::Tls;
use ws_stream_server::{bind, logging, serve, AppState};

#[tokio::main]
async fn main() -> ExitCode {
    let action = ws_stream_server::cli::parse(std::env::args_os().skip(1));
    if let Some(code) = ws_stream_server::cli::dispatch(action) {
        return code;
    }
    let loaded = match Config::from_env() {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    let config = loaded.config;
    logging::init(config.log_requests, config.log_debug);
    // Only ring is compiled in, so this cannot conflict with another provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let tls = match config.tls.as_ref().map(Tls::new).transpose() {
        Ok(tls) => tls.map(Arc::new),
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let Some(plain) = listen(&config, config.http_port, "http").await else {
        return ExitCode::FAILURE;
    };
    let secure = match &config.tls {
        Some(settings) => match listen(&config, settings.port, "https").await {
            Some(listener) => Some(listener),
            None => return ExitCode::FAILURE,
        },
        None => None,
    };
    if config.control.is_none() {
        tracing::warn!(
            "CONTROL_BASE_URL is not set: running stand-alone, every stream key is accepted"
        );
    }
    let metrics_listener = match config.metrics_address {
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                let shown = listener.local_addr().map_or(addr, |a| a);
                tracing::info!("metrics on http://{shown}/metrics");
                Some(listener)
            }
            Err(e) => {
                tracing::error!(%addr, error = %e, "cannot bind the metrics listener");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let state = AppState::new(config);
    let shutdown = state.shutdown.clone();
    // The control link outlives the sessions so their PUBLISH-END still reach the coordinator.
    let control_stop = tokio_util::sync::CancellationToken::new();
    let control_task = state
        .control
        .as_ref()
        .map(|c| c.spawn(control_stop.clone()));
    let metrics_stop = tokio_util::sync::CancellationToken::new();
    if let Some(listener) = metrics_listener {
        tokio::spawn(ws_stream_server::metrics::serve(
            listener,
            state.clone(),
            metrics_stop.clone(),
        ));
    }
    let mut servers = vec![tokio::spawn(serve(plain, state.clone(), None))];
    if let (Some(listener), Some(tls)) = (secure, tls) {
        tokio::spawn(tls.clone().watch(shutdown.clone()));
        servers.push(tokio::spawn(serve(listener, state.clone(), Some(tls))));
    }
    wait_for_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    for server in servers {
        let _ = server.await;
    }
    state.tasks.close();
    if tokio::time::timeout(state.config.shutdown_grace, state.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("grace period over: connections still open are dropped");
    }
    control_stop.cancel();
    if let Some(task) = control_task {
        let _ = tokio::time::timeout(state.config.shutdown_grace, task).await;
    }
    metrics_stop.cancel();
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Binds one listener and logs its address; `None` (logged) when it cannot bind.
async fn listen(config: &Config, port: u16, scheme: &str) -> Option<TcpListener> {
    match bind(config.bind_address, port).await {
        Ok(listener) => {
            match listener.local_addr() {
                Ok(addr) => tracing::info!("listening on {scheme}://{addr}"),
                Err(e) => tracing::warn!(error = %e, "listening, address unknown"),
            }
            Some(listener)
        }
        Err(e) => {
            tracing::error!(port, error = %e, "cannot bind the {scheme} listener");
            None
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the server with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
