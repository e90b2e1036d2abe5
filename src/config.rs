//! Configuration from environment variables (docs/PROTOCOL.md §4).
//!
//! Every variable is parsed strictly; all bad values are reported together and
//! the server refuses to start. The environment is read through a lookup
//! function so tests can pass a map.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::access::AddrSet;
pub use crate::hub::LaggingReceivers;

mod dotenv;
mod edge;
mod operator;
pub mod vars;

pub use self::edge::*;
pub use self::operator::*;

pub const ENV_HTTP_PORT: &str = "HTTP_PORT";
pub const ENV_BIND_ADDRESS: &str = "BIND_ADDRESS";
pub const ENV_SSL_PORT: &str = "SSL_PORT";
pub const ENV_SSL_CERT: &str = "SSL_CERT";
pub const ENV_SSL_KEY: &str = "SSL_KEY";
pub const ENV_SSL_CHECK_RELOAD_SECONDS: &str = "SSL_CHECK_RELOAD_SECONDS";
pub const ENV_CONTROL_BASE_URL: &str = "CONTROL_BASE_URL";
pub const ENV_CONTROL_SECRET: &str = "CONTROL_SECRET";
pub const ENV_EXTERNAL_IP: &str = "EXTERNAL_IP";
pub const ENV_EXTERNAL_PORT: &str = "EXTERNAL_PORT";
pub const ENV_EXTERNAL_SSL: &str = "EXTERNAL_SSL";
pub const ENV_PLAY_WHITELIST: &str = "PLAY_WHITELIST";
pub const ENV_MAX_IP_CONCURRENT_CONNECTIONS: &str = "MAX_IP_CONCURRENT_CONNECTIONS";
pub const ENV_CONCURRENT_LIMIT_WHITELIST: &str = "CONCURRENT_LIMIT_WHITELIST";
pub const ENV_GOP_CACHE_SIZE_MB: &str = "GOP_CACHE_SIZE_MB";
pub const ENV_ID_MAX_LENGTH: &str = "ID_MAX_LENGTH";
pub const ENV_LOG_REQUESTS: &str = "LOG_REQUESTS";
pub const ENV_LOG_DEBUG: &str = "LOG_DEBUG";
pub const ENV_DISABLE_TEST_CLIENT: &str = "DISABLE_TEST_CLIENT";
pub const ENV_HEARTBEAT_SECONDS: &str = "HEARTBEAT_SECONDS";
pub const ENV_IDLE_TIMEOUT_SECONDS: &str = "IDLE_TIMEOUT_SECONDS";
pub const ENV_RECEIVER_QUEUE_MB: &str = "RECEIVER_QUEUE_MB";
pub const ENV_LAGGING_RECEIVERS: &str = "LAGGING_RECEIVERS";
pub const ENV_INGEST_LEAD_MB: &str = "INGEST_LEAD_MB";
pub const ENV_MAX_MESSAGE_SIZE_MB: &str = "MAX_MESSAGE_SIZE_MB";
pub const ENV_MAX_CLIENT_MESSAGE_KB: &str = "MAX_CLIENT_MESSAGE_KB";
pub const ENV_UPGRADE_TIMEOUT_SECONDS: &str = "UPGRADE_TIMEOUT_SECONDS";
pub const ENV_PLAY_WAIT_SECONDS: &str = "PLAY_WAIT_SECONDS";
pub const ENV_MAX_REQUEST_HEAD_KB: &str = "MAX_REQUEST_HEAD_KB";
pub const ENV_PUBLISH_AUTH_TIMEOUT_SECONDS: &str = "PUBLISH_AUTH_TIMEOUT_SECONDS";
pub const ENV_CONTROL_RETRY_SECONDS: &str = "CONTROL_RETRY_SECONDS";
pub const ENV_SHUTDOWN_GRACE_SECONDS: &str = "SHUTDOWN_GRACE_SECONDS";
pub const ENV_METRICS_ADDRESS: &str = "METRICS_ADDRESS";
pub const ENV_LISTEN_BACKLOG: &str = "LISTEN_BACKLOG";

/// The `.env` file, in the working directory.
pub const DOTENV: &str = ".env";

const MIB: u64 = 1024 * 1024;
/// Largest size setting in MiB (1 TiB).
const MAX_MB: u64 = 1 << 20;
/// Largest time setting: a year.
const MAX_SECONDS: u64 = 365 * 24 * 3600;

/// Sizes are bounded far below `usize::MAX` on the 64-bit targets we build for.
fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// The whole server configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub http_port: u16,
    /// `None` = all interfaces.
    pub bind_address: Option<IpAddr>,
    pub tls: Option<TlsSettings>,
    pub control: Option<ControlSettings>,
    pub play_whitelist: AddrSet,
    pub max_ip_concurrent: u32,
    pub concurrent_limit_whitelist: AddrSet,
    /// 0 disables the cache.
    pub gop_cache_bytes: u64,
    pub id_max_length: usize,
    pub log_requests: bool,
    pub log_debug: bool,
    pub disable_test_client: bool,
    pub heartbeat: Duration,
    pub idle_timeout: Duration,
    /// How far (in bytes) a receiver may fall behind the live head before it is closed.
    pub receiver_queue_bytes: u64,
    /// What becomes of a receiver over `receiver_queue_bytes`.
    pub lagging_receivers: LaggingReceivers,
    /// `INGEST_LEAD_MB` as set (0 = no ingest hold); see [`Config::ingest_lead_bytes`].
    pub ingest_lead_mb: u64,
    /// Largest message a publisher may send.
    pub max_message_bytes: usize,
    /// Largest message a receiver or probe may send.
    pub max_client_message_bytes: usize,
    /// Time allowed for the request head and for completing the upgrade.
    pub upgrade_timeout: Duration,
    /// How long `GET /{channel}/{key}/play` waits for a publisher before `404 Not publishing.`
    pub play_wait: Duration,
    pub max_request_head_bytes: usize,
    pub shutdown_grace: Duration,
    /// Where `/metrics` and `/healthz` are served; `None` = off.
    pub metrics_address: Option<SocketAddr>,
    /// Listen queue of each listener (the kernel caps it at `net.core.somaxconn`).
    pub listen_backlog: u32,
    /// The authorisation callback, the event webhook and the API token.
    pub operator: OperatorSettings,
    /// Pull channels without a local publisher from origins; `None` = off.
    pub edge: Option<EdgeSettings>,
}

#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub port: u16,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// `None` disables reloading.
    pub check_reload: Option<Duration>,
}

#[derive(Clone)]
pub struct ControlSettings {
    /// `{base}` resolved against `/ws/control/wss`.
    pub url: String,
    pub secret: String,
    pub external_ip: Option<String>,
    pub external_port: Option<String>,
    pub external_ssl: bool,
    pub publish_auth_timeout: Duration,
    pub retry_delay: Duration,
}

impl fmt::Debug for ControlSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlSettings")
            .field("url", &self.url)
            .field("secret", &"***")
            .field("external_ip", &self.external_ip)
            .field("external_port", &self.external_port)
            .field("external_ssl", &self.external_ssl)
            .finish()
    }
}

/// One variable that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} {:?}: expected {}",
            self.var, self.value, self.expected
        )
    }
}

/// Every bad variable of one start-up.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

/// A `.env` that cannot be read or parsed completely: one line naming the
/// file, the line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file} line {line}: {what}")]
pub struct DotenvError {
    pub file: String,
    /// 1-based; 0 when the file as a whole cannot be read.
    pub line: usize,
    pub what: String,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Dotenv(#[from] DotenvError),
    #[error(transparent)]
    Config(#[from] ConfigErrors),
}

impl LoadError {
    /// How many errors this is.
    pub fn count(&self) -> usize {
        match self {
            Self::Dotenv(_) => 1,
            Self::Config(errors) => errors.0.len(),
        }
    }
}

/// Parsed configuration plus warnings to log once logging is up.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

impl Config {
    /// The ingest lead in bytes: `INGEST_LEAD_MB`, at most half of `RECEIVER_QUEUE_MB`
    /// (0 = no ingest hold).
    pub fn ingest_lead_bytes(&self) -> u64 {
        (self.ingest_lead_mb * MIB).min(self.receiver_queue_bytes / 2)
    }

    /// Loads `.env` from the working directory (without overriding the real
    /// environment), then parses. A missing `.env` is normal; one that cannot
    /// be read or parsed completely is an error.
    pub fn from_env() -> Result<Loaded, LoadError> {
        match std::fs::read(DOTENV) {
            // Applied line by line (a later `${NAME}` sees an earlier line); a
            // bad line stops the start, so a partly applied file never runs.
            Ok(bytes) => dotenv::load(DOTENV, &bytes, |name, value| {
                if std::env::var_os(&name).is_none() {
                    std::env::set_var(name, value);
                }
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(DotenvError {
                    file: DOTENV.to_owned(),
                    line: 0,
                    what: format!("cannot be read: {e}"),
                }
                .into())
            }
        }
        Ok(Self::from_lookup(|name| std::env::var(name).ok())?)
    }

    /// Parses every variable through `get`; empty values count as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Loaded, ConfigErrors> {
        let mut p = Parser {
            get: &get,
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        let config = p.config();
        if p.errors.is_empty() {
            Ok(Loaded {
                config,
                warnings: p.warnings,
            })
        } else {
            Err(ConfigErrors(p.errors))
        }
    }
}

/// How the original server read a boolean flag, to warn where we differ.
#[derive(Clone, Copy)]
enum Legacy {
    /// On unless exactly `NO`.
    OnUnlessNo,
    /// On only when exactly `YES`.
    OnlyYes,
}

struct Parser<'a, F> {
    get: &'a F,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
}

impl<F: Fn(&str) -> Option<String>> Parser<'_, F> {
    fn config(&mut self) -> Config {
        let tls = self.tls();
        let control = self.control();
        Config {
            http_port: self.port(ENV_HTTP_PORT, 80),
            bind_address: self.parse(ENV_BIND_ADDRESS, "an IPv4 or IPv6 address", parse_bind),
            tls,
            control,
            play_whitelist: self.addr_set(ENV_PLAY_WHITELIST, true),
            max_ip_concurrent: self.number(ENV_MAX_IP_CONCURRENT_CONNECTIONS, 4),
            concurrent_limit_whitelist: self.addr_set(ENV_CONCURRENT_LIMIT_WHITELIST, false),
            gop_cache_bytes: self.sized(ENV_GOP_CACHE_SIZE_MB, 256, 0..=MAX_MB) * MIB,
            id_max_length: self.positive(ENV_ID_MAX_LENGTH, 128),
            log_requests: self.flag(ENV_LOG_REQUESTS, true, Legacy::OnUnlessNo),
            log_debug: self.flag(ENV_LOG_DEBUG, false, Legacy::OnlyYes),
            disable_test_client: self.flag(ENV_DISABLE_TEST_CLIENT, false, Legacy::OnlyYes),
            heartbeat: self.seconds(ENV_HEARTBEAT_SECONDS, 20),
            idle_timeout: self.seconds(ENV_IDLE_TIMEOUT_SECONDS, 60),
            receiver_queue_bytes: self.sized(ENV_RECEIVER_QUEUE_MB, 64, 1..=MAX_MB) * MIB,
            lagging_receivers: self
                .parse(ENV_LAGGING_RECEIVERS, "skip or close", |v| {
                    match v.to_ascii_lowercase().as_str() {
                        "skip" => Some(LaggingReceivers::Skip),
                        "close" => Some(LaggingReceivers::Close),
                        _ => None,
                    }
                })
                .unwrap_or_default(),
            ingest_lead_mb: self.sized(ENV_INGEST_LEAD_MB, 2, 0..=MAX_MB),
            max_message_bytes: to_usize(self.sized(ENV_MAX_MESSAGE_SIZE_MB, 64, 1..=4096) * MIB),
            max_client_message_bytes: to_usize(
                self.sized(ENV_MAX_CLIENT_MESSAGE_KB, 64, 1..=1 << 20) << 10,
            ),
            upgrade_timeout: self.seconds(ENV_UPGRADE_TIMEOUT_SECONDS, 10),
            play_wait: self.seconds(ENV_PLAY_WAIT_SECONDS, 10),
            max_request_head_bytes: to_usize(
                self.sized(ENV_MAX_REQUEST_HEAD_KB, 16, 8..=1024) << 10,
            ),
            shutdown_grace: self.seconds(ENV_SHUTDOWN_GRACE_SECONDS, 5),
            metrics_address: self.parse(
                ENV_METRICS_ADDRESS,
                "an address:port such as 127.0.0.1:9090",
                |v| v.parse().ok(),
            ),
            listen_backlog: u32::try_from(self.sized(ENV_LISTEN_BACKLOG, 4096, 1..=65535))
                .unwrap_or(4096),
            operator: self.operator(),
            edge: self.edge(),
        }
    }

    fn raw(&self, var: &str) -> Option<String> {
        (self.get)(var).filter(|v| !v.trim().is_empty())
    }

    fn fail(&mut self, var: &'static str, value: &str, expected: &str) {
        self.errors.push(ConfigError {
            var,
            value: value.to_owned(),
            expected: expected.to_owned(),
        });
    }

    /// Parses `var` when set; `None` when unset or bad (bad values are recorded).
    fn parse<T>(
        &mut self,
        var: &'static str,
        expected: &str,
        f: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        let value = self.raw(var)?;
        let parsed = f(value.trim());
        if parsed.is_none() {
            self.fail(var, &value, expected);
        }
        parsed
    }

    fn port(&mut self, var: &'static str, default: u16) -> u16 {
        self.parse(var, "a port number 0-65535", |v| v.parse().ok())
            .unwrap_or(default)
    }

    fn number<T: std::str::FromStr>(&mut self, var: &'static str, default: T) -> T {
        self.parse(var, "a non-negative whole number", |v| v.parse().ok())
            .unwrap_or(default)
    }

    fn positive<T>(&mut self, var: &'static str, default: T) -> T
    where
        T: std::str::FromStr + PartialOrd + Default,
    {
        self.parse(var, "a whole number greater than 0", |v| {
            v.parse().ok().filter(|n: &T| *n > T::default())
        })
        .unwrap_or(default)
    }

    /// A whole number within `range` (sizes, so that bytes cannot overflow).
    fn sized(
        &mut self,
        var: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> u64 {
        let expected = format!("a whole number from {} to {}", range.start(), range.end());
        self.parse(var, &expected, |v| {
            v.parse().ok().filter(|n| range.contains(n))
        })
        .unwrap_or(default)
    }

    /// Seconds from 1 to a year (longer would overflow the clock arithmetic).
    fn seconds(&mut self, var: &'static str, default: u64) -> Duration {
        Duration::from_secs(self.sized(var, default, 1..=MAX_SECONDS))
    }

    fn flag(&mut self, var: &'static str, default: bool, legacy: Legacy) -> bool {
        let Some(value) = self.raw(var) else {
            return default;
        };
        let Some(ours) = parse_bool(&value) else {
            self.fail(var, &value, "YES/NO, TRUE/FALSE, ON/OFF or 1/0");
            return default;
        };
        let theirs = match legacy {
            Legacy::OnUnlessNo => value != "NO",
            Legacy::OnlyYes => value == "YES",
        };
        if ours != theirs {
            self.warnings.push(format!(
                "{var}={value:?} is read as {}; the original server read it as {}",
                on_off(ours),
                on_off(theirs)
            ));
        }
        ours
    }

    fn addr_set(&mut self, var: &'static str, empty_means_all: bool) -> AddrSet {
        let Some(value) = self.raw(var) else {
            return AddrSet::from_empty(empty_means_all);
        };
        match AddrSet::parse(&value, empty_means_all) {
            Ok(set) => set,
            Err(bad) => {
                let expected = format!(
                    "a comma-separated list of IP addresses, CIDR ranges or *; bad item {bad:?}"
                );
                self.fail(var, &value, &expected);
                AddrSet::from_empty(empty_means_all)
            }
        }
    }

    fn tls(&mut self) -> Option<TlsSettings> {
        let port = self.port(ENV_SSL_PORT, 443);
        let reload: i64 = self
            .parse(
                ENV_SSL_CHECK_RELOAD_SECONDS,
                "a whole number of seconds",
                |v| v.parse().ok(),
            )
            .unwrap_or(60);
        let cert = self.raw(ENV_SSL_CERT);
        let key = self.raw(ENV_SSL_KEY);
        match (cert, key) {
            (Some(cert), Some(key)) => Some(TlsSettings {
                port,
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
                check_reload: u64::try_from(reload)
                    .ok()
                    .filter(|s| *s > 0)
                    .map(Duration::from_secs),
            }),
            (None, None) => None,
            (Some(cert), None) => {
                self.fail(ENV_SSL_CERT, &cert, "SSL_KEY to be set as well");
                None
            }
            (None, Some(key)) => {
                self.fail(ENV_SSL_KEY, &key, "SSL_CERT to be set as well");
                None
            }
        }
    }

    fn control(&mut self) -> Option<ControlSettings> {
        let external_ssl = self.flag(ENV_EXTERNAL_SSL, false, Legacy::OnlyYes);
        // The coordinator reads x-external-ip only as an IP literal and
        // x-custom-port only as a number (PROTOCOL.md §3): anything else is
        // a start-up error, not a value it would silently replace.
        let external_ip = self.parse(ENV_EXTERNAL_IP, "an IPv4 or IPv6 address", |v| {
            v.parse::<IpAddr>().ok().map(|_| v.to_owned())
        });
        let external_port = self.parse(ENV_EXTERNAL_PORT, "a port number 1-65535", |v| {
            v.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .map(|_| v.to_owned())
        });
        let publish_auth_timeout = self.seconds(ENV_PUBLISH_AUTH_TIMEOUT_SECONDS, 20);
        let retry_delay = self.seconds(ENV_CONTROL_RETRY_SECONDS, 10);
        let secret = (self.get)(ENV_CONTROL_SECRET).unwrap_or_default();
        let url = self.parse(
            ENV_CONTROL_BASE_URL,
            "a ws:// or wss:// URL with a host",
            control_url,
        )?;
        Some(ControlSettings {
            url,
            secret,
            external_ip,
            external_port,
            external_ssl,
            publish_auth_timeout,
            retry_delay,
        })
    }
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// `YES`/`NO`, `TRUE`/`FALSE`, `ON`/`OFF`, `1`/`0`, any case.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_uppercase().as_str() {
        "YES" | "TRUE" | "ON" | "1" => Some(true),
        "NO" | "FALSE" | "OFF" | "0" => Some(false),
        _ => None,
    }
}

/// An IPv4 or IPv6 literal, IPv6 optionally in brackets.
pub fn parse_bind(value: &str) -> Option<IpAddr> {
    let bare = value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(value);
    bare.parse().ok()
}

/// The coordinator's control URL: the base's scheme and authority with path `/ws/control/wss`.
pub fn control_url(base: &str) -> Option<String> {
    let url = url::Url::parse(base).ok()?;
    if !matches!(url.scheme(), "ws" | "wss") || url.host_str().is_none_or(str::is_empty) {
        return None;
    }
    url.join("/ws/control/wss").ok().map(String::from)
}

#[cfg(test)]
mod tests;
