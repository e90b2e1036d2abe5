//! The authorisation callback (`AUTH_HTTP_URL`): for the streaming kinds in
//! `AUTH_HTTP_KINDS`, after every other check of the front door and before the
//! upgrade, the server POSTs `{"action","channel","key","ip","id"}` and waits
//! at most `AUTH_HTTP_TIMEOUT_SECONDS`. A 2xx allows; any other status, a
//! timeout, an error, or more than `AUTH_HTTP_MAX_INFLIGHT` requests already
//! waiting deny (`403 Invalid Key.`). The key is in the body only, never in a
//! URL or a log line.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::AuthSettings;
use crate::hub::Kind;
use crate::metrics::{Metrics, OutcomeLabel};
use crate::outbound::HttpClient;
use crate::session::Tag;

/// The body of one authorisation request.
#[derive(Debug, serde::Serialize)]
struct AuthRequest<'a> {
    action: &'static str,
    channel: &'a str,
    key: &'a str,
    ip: String,
    id: u64,
}

/// Why the callback did not allow a request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Denied {
    #[error("the callback answered {0}")]
    Status(http::StatusCode),
    #[error("the callback did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the callback failed: {0}")]
    Error(String),
    #[error("too many authorisation requests waiting")]
    Overloaded,
}

impl Denied {
    fn label(&self) -> &'static str {
        match self {
            Self::Status(_) => "denied",
            Self::Timeout(_) => "timeout",
            Self::Error(_) => "error",
            Self::Overloaded => "overloaded",
        }
    }
}

/// The configured callback.
#[derive(Debug)]
pub(crate) struct AuthHook {
    settings: AuthSettings,
    client: HttpClient,
    inflight: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl AuthHook {
    pub(crate) fn new(settings: AuthSettings, metrics: Arc<Metrics>) -> Self {
        let client = HttpClient::for_url(&settings.url);
        let inflight = Arc::new(Semaphore::new(settings.max_inflight));
        Self {
            settings,
            client,
            inflight,
            metrics,
        }
    }

    /// Whether requests of `kind` ask the callback.
    pub(crate) fn applies(&self, kind: Kind) -> bool {
        self.settings.kinds.contains(&kind.as_str())
    }

    /// Asks the callback about one request; `Ok` when it allowed it.
    pub(crate) async fn check(
        &self,
        kind: Kind,
        channel: &str,
        key: &str,
        tag: Tag,
    ) -> Result<(), Denied> {
        let result = self.ask(kind, channel, key, tag).await;
        let outcome = match &result {
            Ok(()) => "allowed",
            Err(denied) => denied.label(),
        };
        self.metrics
            .auth_requests
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
        result
    }

    async fn ask(&self, kind: Kind, channel: &str, key: &str, tag: Tag) -> Result<(), Denied> {
        let Ok(_permit) = self.inflight.clone().try_acquire_owned() else {
            return Err(Denied::Overloaded);
        };
        let body = AuthRequest {
            action: kind.as_str(),
            channel,
            key,
            ip: tag.ip.to_string(),
            id: tag.id,
        };
        let body = serde_json::to_vec(&body).map_err(|e| Denied::Error(e.to_string()))?;
        let started = Instant::now();
        let limit = self.settings.timeout;
        let answer = tokio::time::timeout(
            limit,
            self.client.post_json(&self.settings.url, Bytes::from(body)),
        )
        .await;
        self.metrics
            .auth_seconds
            .observe(started.elapsed().as_secs_f64());
        match answer {
            Err(_) => Err(Denied::Timeout(limit)),
            Ok(Err(e)) => Err(Denied::Error(e.to_string())),
            Ok(Ok(status)) if status.is_success() => Ok(()),
            Ok(Ok(status)) => Err(Denied::Status(status)),
        }
    }
}
