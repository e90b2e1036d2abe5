//! Edge relays (issue 15): the origins a channel without a local publisher is
//! pulled from, and the timers of the pull.

use std::fmt;
use std::time::Duration;

use super::*;

pub const ENV_ORIGIN_URLS: &str = "ORIGIN_URLS";
pub const ENV_EDGE_RETRY_SECONDS: &str = "EDGE_RETRY_SECONDS";
pub const ENV_EDGE_LINGER_SECONDS: &str = "EDGE_LINGER_SECONDS";

/// Where and how this server pulls channels it has no publisher for.
#[derive(Clone)]
pub struct EdgeSettings {
    /// Base URLs of the origins (`ws://` or `wss://`, no query); a channel is
    /// pulled from `{origin}/{channel}/{key}/receive`.
    pub origins: Vec<url::Url>,
    /// Wait before an origin that refused or could not be reached is tried again.
    pub retry: Duration,
    /// How long an upstream stays open after its last local receiver left.
    pub linger: Duration,
}

impl fmt::Debug for EdgeSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origins: Vec<String> = self.origins.iter().map(mask).collect();
        f.debug_struct("EdgeSettings")
            .field("origins", &origins)
            .field("retry", &self.retry)
            .field("linger", &self.linger)
            .finish()
    }
}

impl EdgeSettings {
    /// The origins as text for logs and `--check-config` (credentials masked).
    pub fn shown(&self) -> String {
        let origins: Vec<String> = self.origins.iter().map(mask).collect();
        origins.join(",")
    }
}

/// A `ws://` or `wss://` URL with a host and without a query or fragment.
pub fn origin_url(value: &str) -> Option<url::Url> {
    let url = url::Url::parse(value).ok()?;
    let ok = matches!(url.scheme(), "ws" | "wss")
        && url.host_str().is_some_and(|h| !h.is_empty())
        && url.query().is_none()
        && url.fragment().is_none();
    ok.then_some(url)
}

/// A comma list of origin URLs, at least one, each valid.
pub fn origin_urls(value: &str) -> Option<Vec<url::Url>> {
    let urls: Option<Vec<url::Url>> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(origin_url)
        .collect();
    urls.filter(|u| !u.is_empty())
}

impl<F: Fn(&str) -> Option<String>> Parser<'_, F> {
    pub(super) fn edge(&mut self) -> Option<EdgeSettings> {
        let retry = self.seconds(ENV_EDGE_RETRY_SECONDS, 2);
        let linger = Duration::from_secs(self.sized(ENV_EDGE_LINGER_SECONDS, 10, 0..=MAX_SECONDS));
        let origins = self.parse(
            ENV_ORIGIN_URLS,
            "a comma list of ws:// or wss:// URLs with a host (no query)",
            origin_urls,
        )?;
        Some(EdgeSettings {
            origins,
            retry,
            linger,
        })
    }
}
