//! The operator's integrations without a coordinator (issue 18): the
//! authorisation callback, the event webhook and the JSON API's token.

use std::fmt;
use std::time::Duration;

use super::*;
use crate::hub::Kind;

pub const ENV_AUTH_HTTP_URL: &str = "AUTH_HTTP_URL";
pub const ENV_AUTH_HTTP_KINDS: &str = "AUTH_HTTP_KINDS";
pub const ENV_AUTH_HTTP_TIMEOUT_SECONDS: &str = "AUTH_HTTP_TIMEOUT_SECONDS";
pub const ENV_AUTH_HTTP_MAX_INFLIGHT: &str = "AUTH_HTTP_MAX_INFLIGHT";
pub const ENV_EVENT_WEBHOOK_URL: &str = "EVENT_WEBHOOK_URL";
pub const ENV_API_TOKEN: &str = "API_TOKEN";

/// What the operator integrations are set to.
#[derive(Clone, Default)]
pub struct OperatorSettings {
    /// `None`: no callback, every request the other checks pass is allowed.
    pub auth: Option<AuthSettings>,
    /// `None`: no events are sent.
    pub webhook_url: Option<url::Url>,
    /// `None`: the API's GETs are open, its POSTs refused.
    pub api_token: Option<String>,
}

impl fmt::Debug for OperatorSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OperatorSettings")
            .field("auth", &self.auth)
            .field("webhook_url", &self.webhook_url.as_ref().map(mask))
            .field("api_token", &self.api_token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// The authorisation callback.
#[derive(Clone)]
pub struct AuthSettings {
    pub url: url::Url,
    /// The kinds of streaming request that ask it (`publish`, `receive`, ...).
    pub kinds: Vec<&'static str>,
    pub timeout: Duration,
    pub max_inflight: usize,
}

impl fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthSettings")
            .field("url", &mask(&self.url))
            .field("kinds", &self.kinds)
            .field("timeout", &self.timeout)
            .field("max_inflight", &self.max_inflight)
            .finish()
    }
}

/// A URL fit for a log line or `--check-config`: its password and the value
/// of every query parameter (where tokens usually travel) replaced by `***`.
pub(crate) fn mask(url: &url::Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    if u.query().is_some() {
        let names: Vec<String> = u.query_pairs().map(|(name, _)| name.into_owned()).collect();
        u.query_pairs_mut()
            .clear()
            .extend_pairs(names.iter().map(|name| (name.as_str(), "***")));
    }
    u.to_string()
}

/// [`mask`] for a URL kept as text; text that is not a URL is shown as is.
pub(crate) fn mask_str(url: &str) -> String {
    url::Url::parse(url).map_or_else(|_| url.to_owned(), |u| mask(&u))
}

/// An `http://` or `https://` URL with a host.
pub fn http_url(value: &str) -> Option<url::Url> {
    let url = url::Url::parse(value).ok()?;
    let ok =
        matches!(url.scheme(), "http" | "https") && url.host_str().is_some_and(|h| !h.is_empty());
    ok.then_some(url)
}

/// A comma list of streaming kinds, at least one.
pub fn kinds(value: &str) -> Option<Vec<&'static str>> {
    let mut kinds = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let kind = Kind::parse(item)?.as_str();
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    (!kinds.is_empty()).then_some(kinds)
}

impl<F: Fn(&str) -> Option<String>> Parser<'_, F> {
    pub(super) fn operator(&mut self) -> OperatorSettings {
        const URL: &str = "an http:// or https:// URL with a host";
        let url = self.parse(ENV_AUTH_HTTP_URL, URL, http_url);
        let kinds = self
            .parse(
                ENV_AUTH_HTTP_KINDS,
                "a comma list of publish, receive, receive-clear-cache, probe, play",
                kinds,
            )
            .unwrap_or_else(|| vec![Kind::Publish.as_str()]);
        let timeout = self.seconds(ENV_AUTH_HTTP_TIMEOUT_SECONDS, 5);
        let max_inflight = to_usize(self.sized(ENV_AUTH_HTTP_MAX_INFLIGHT, 256, 1..=1 << 20));
        let auth = url.map(|url| AuthSettings {
            url,
            kinds,
            timeout,
            max_inflight,
        });
        let webhook_url = self.parse(ENV_EVENT_WEBHOOK_URL, URL, http_url);
        let api_token = self.raw(ENV_API_TOKEN).map(|t| t.trim().to_owned());
        OperatorSettings {
            auth,
            webhook_url,
            api_token,
        }
    }
}
