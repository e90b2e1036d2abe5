//! The ws-stream-server binary: configuration, logging, listeners, run, exit code.

use std::process::ExitCode;

use ws_stream_server::config::Config;
use ws_stream_server::{cli, logging, run, terminated, Listeners};

#[tokio::main]
async fn main() -> ExitCode {
    if let Some(code) = cli::dispatch(cli::parse(std::env::args_os().skip(1))) {
        return code;
    }
    let loaded = match Config::from_env() {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    logging::init(loaded.config.log_requests, loaded.config.log_debug);
    loaded.warnings.iter().for_each(|w| tracing::warn!("{w}"));
    ws_stream_server::fdlimit::raise_and_log();
    let listeners = match Listeners::bind(&loaded.config).await {
        Ok(listeners) => listeners,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match run(loaded.config, listeners, terminated()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}
