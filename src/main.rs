//! The ws-stream-server binary: configuration, logging, listener, serve.

use std::process::ExitCode;

use ws_stream_server::config::Config;
use ws_stream_server::{bind, logging, serve, AppState};

#[tokio::main]
async fn main() -> ExitCode {
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
    let listener = match bind(config.bind_address, config.http_port).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(port = config.http_port, error = %e, "cannot bind the HTTP listener");
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => tracing::info!("listening on http://{addr}"),
        Err(e) => tracing::warn!(error = %e, "listening, address unknown"),
    }
    if config.control.is_none() {
        tracing::warn!(
            "CONTROL_BASE_URL is not set: running stand-alone, every stream key is accepted"
        );
    }
    let state = AppState::new(config);
    let shutdown = state.shutdown.clone();
    let control_task = state.control.as_ref().map(|c| c.spawn(shutdown.clone()));
    let server = tokio::spawn(serve(listener, state.clone()));
    wait_for_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    let _ = server.await;
    if let Some(task) = control_task {
        let _ = task.await;
    }
    state.tasks.close();
    if tokio::time::timeout(state.config.shutdown_grace, state.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("grace period over: connections still open are dropped");
    }
    ExitCode::SUCCESS
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
