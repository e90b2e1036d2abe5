//! The table of configuration variables: name, default, meaning, secret.
//!
//! One source of truth for `--help`, `--check-config`, README's configuration
//! table and the packaged `/etc/ws-stream-server/env`. Unit tests below run
//! the parser with a recording lookup and require that it reads exactly these
//! names, and that each default shown here is what the parser does when the
//! variable is unset.

use std::fmt::Write as _;

use super::*;

/// What an unset variable means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// A value the parser accepts and that behaves exactly like unset.
    Literal(&'static str),
    /// No value means this (described in words).
    Described(&'static str),
}

impl DefaultValue {
    /// The default as shown to people.
    pub fn shown(self) -> &'static str {
        match self {
            DefaultValue::Literal(v) | DefaultValue::Described(v) => v,
        }
    }
}

/// One environment variable the server reads.
#[derive(Debug, Clone, Copy)]
pub struct Var {
    pub name: &'static str,
    pub default: DefaultValue,
    pub meaning: &'static str,
    /// Never printed: `--check-config` shows `***` when set.
    pub secret: bool,
}

const fn var(name: &'static str, default: DefaultValue, meaning: &'static str) -> Var {
    Var {
        name,
        default,
        meaning,
        secret: false,
    }
}

use DefaultValue::{Described as Unset, Literal as Value};

/// Every variable, in the order of README's table.
pub const VARS: &[Var] = &[
    var(ENV_HTTP_PORT, Value("80"), "plain HTTP/WS port; 0 = any free port"),
    var(
        ENV_BIND_ADDRESS,
        Unset("all interfaces"),
        "IPv4 or IPv6 address (`::1` or `[::1]`) for both listeners",
    ),
    var(
        ENV_SSL_PORT,
        Value("443"),
        "HTTPS/WSS port, only when `SSL_CERT` and `SSL_KEY` are set",
    ),
    var(
        ENV_SSL_CERT,
        Unset("—"),
        "PEM certificate chain file (with `SSL_KEY`: both or neither)",
    ),
    var(
        ENV_SSL_KEY,
        Unset("—"),
        "PEM private key file (with `SSL_CERT`: both or neither)",
    ),
    var(
        ENV_SSL_CHECK_RELOAD_SECONDS,
        Value("60"),
        "how often the certificate files are checked for change; ≤ 0 disables",
    ),
    var(
        ENV_CONTROL_BASE_URL,
        Unset("—"),
        "coordinator URL (`ws://` or `wss://`); unset = stand-alone, every key accepted",
    ),
    Var {
        name: ENV_CONTROL_SECRET,
        default: Unset("—"),
        meaning: "secret for the coordinator's JWT; unset = no token sent",
        secret: true,
    },
    var(
        ENV_EXTERNAL_IP,
        Unset("—"),
        "IP address (v4 or v6) advertised to the coordinator; unset = the connection's address",
    ),
    var(
        ENV_EXTERNAL_PORT,
        Unset("—"),
        "port (1-65535) advertised to the coordinator; unset = 80",
    ),
    var(
        ENV_EXTERNAL_SSL,
        Value("NO"),
        "YES tells the coordinator that clients use TLS",
    ),
    var(
        ENV_PLAY_WHITELIST,
        Unset("everyone"),
        "comma list of IPs and CIDR ranges (v4, v6) allowed to receive/probe/play; `*` = everyone",
    ),
    var(
        ENV_MAX_IP_CONCURRENT_CONNECTIONS,
        Value("4"),
        "concurrent streaming connections per client IP",
    ),
    var(
        ENV_CONCURRENT_LIMIT_WHITELIST,
        Unset("nobody"),
        "comma list of IPs/ranges exempt from that limit; `*` = everyone",
    ),
    var(
        ENV_GOP_CACHE_SIZE_MB,
        Value("256"),
        "cache bound per publishing session (chunk length + 16 bytes each); 0 disables",
    ),
    var(ENV_ID_MAX_LENGTH, Value("128"), "max length of channel and key"),
    var(
        ENV_LOG_REQUESTS,
        Value("YES"),
        "one log line per request and session event",
    ),
    var(
        ENV_LOG_DEBUG,
        Value("NO"),
        "debug lines: chunk sizes, bitrate, control messages",
    ),
    var(
        ENV_DISABLE_TEST_CLIENT,
        Value("NO"),
        "YES removes the browser test page",
    ),
    var(
        ENV_HEARTBEAT_SECONDS,
        Value("20"),
        "interval of the `h` heartbeat",
    ),
    var(
        ENV_IDLE_TIMEOUT_SECONDS,
        Value("60"),
        "a client silent this long is closed",
    ),
    var(
        ENV_RECEIVER_QUEUE_MB,
        Value("64"),
        "bytes a receiver may queue beyond the chunk it sends (lengths + 16 each); then LAGGING_RECEIVERS",
    ),
    var(
        ENV_LAGGING_RECEIVERS,
        Value("skip"),
        "over RECEIVER_QUEUE_MB: `skip` to the newest join point (opaque stream: 1008) or `close` (1008)",
    ),
    var(
        ENV_INGEST_LEAD_MB,
        Value("2"),
        "hold ingest: >1/10 of receivers lag this, or one 2× as far catches up (≤ RECEIVER_QUEUE_MB/2; 0: no)",
    ),
    var(
        ENV_MAX_MESSAGE_SIZE_MB,
        Value("64"),
        "largest message a publisher may send (larger: close 1009)",
    ),
    var(
        ENV_MAX_CLIENT_MESSAGE_KB,
        Value("64"),
        "largest message a receiver or probe may send",
    ),
    var(
        ENV_UPGRADE_TIMEOUT_SECONDS,
        Value("10"),
        "time to send the request head and to complete the upgrade",
    ),
    var(
        ENV_PLAY_WAIT_SECONDS,
        Value("10"),
        "how long `GET /{channel}/{key}/play` waits for a publisher (then 404 `Not publishing.`)",
    ),
    var(
        ENV_MAX_REQUEST_HEAD_KB,
        Value("16"),
        "largest request head (request line + headers), at least 8",
    ),
    var(
        ENV_PUBLISH_AUTH_TIMEOUT_SECONDS,
        Value("20"),
        "how long a publisher waits for the coordinator's answer",
    ),
    var(
        ENV_CONTROL_RETRY_SECONDS,
        Value("10"),
        "wait after a failed dial to the coordinator",
    ),
    var(
        ENV_SHUTDOWN_GRACE_SECONDS,
        Value("5"),
        "how long SIGTERM/SIGINT waits for connections to close",
    ),
    var(
        ENV_METRICS_ADDRESS,
        Unset("off"),
        "`address:port` of a separate listener for `/metrics` (Prometheus) and `/healthz`",
    ),
    var(
        ENV_LISTEN_BACKLOG,
        Value("4096"),
        "listen queue of each listener (1-65535; the kernel caps it at net.core.somaxconn)",
    ),
    var(
        ENV_AUTH_HTTP_URL,
        Unset("off"),
        "`http(s)://` URL asked (POST) before the upgrade; 2xx allows; `user:pass@` = Basic auth",
    ),
    var(
        ENV_AUTH_HTTP_KINDS,
        Value("publish"),
        "comma list of the kinds that ask `AUTH_HTTP_URL`: `publish`, `receive`, `receive-clear-cache`, `probe`, `play`",
    ),
    var(
        ENV_AUTH_HTTP_TIMEOUT_SECONDS,
        Value("5"),
        "longest wait for the authorisation callback's answer; over it: denied",
    ),
    var(
        ENV_AUTH_HTTP_MAX_INFLIGHT,
        Value("256"),
        "authorisation requests waiting at once; more: denied at once",
    ),
    var(
        ENV_EVENT_WEBHOOK_URL,
        Unset("off"),
        "`http(s)://` URL POSTed events (`publish_start`, `publish_end`, `receiver_kicked`); `user:pass@` = Basic",
    ),
    Var {
        name: ENV_API_TOKEN,
        default: Unset("off"),
        meaning: "bearer token `/api` on `METRICS_ADDRESS` requires; unset: GETs served, POSTs refused",
        secret: true,
    },
    var(
        ENV_ORIGIN_URLS,
        Unset("off"),
        "comma list of `ws://`/`wss://` origin servers; a channel without a local publisher is pulled from them",
    ),
    var(
        ENV_EDGE_RETRY_SECONDS,
        Value("2"),
        "wait before an origin that refused or could not be reached is tried again",
    ),
    var(
        ENV_EDGE_LINGER_SECONDS,
        Value("10"),
        "how long a pulled channel's upstream stays open after its last local receiver left; 0 = none",
    ),
];

/// The table entry of `name`.
pub fn find(name: &str) -> Option<&'static Var> {
    VARS.iter().find(|v| v.name == name)
}

/// Shown for a secret that is set.
pub const MASK: &str = "***";

fn yes_no(b: bool) -> String {
    if b { "YES" } else { "NO" }.to_owned()
}

/// The effective value of every variable in [`VARS`] order, as the server will
/// use it (secrets masked). Settings that only matter with TLS or a
/// coordinator say so when those are off.
pub fn effective(config: &Config) -> Vec<(&'static str, String)> {
    let no_tls = || "not used: no SSL_CERT/SSL_KEY".to_owned();
    let no_control = || "not used: no CONTROL_BASE_URL".to_owned();
    let tls = config.tls.as_ref();
    let control = config.control.as_ref();
    let no_auth = || "not used: no AUTH_HTTP_URL".to_owned();
    let auth = config.operator.auth.as_ref();
    let no_edge = || "not used: no ORIGIN_URLS".to_owned();
    let edge = config.edge.as_ref();
    let unset = |name: &str| find(name).map_or("—", |v| v.default.shown()).to_owned();
    let value = |name: &'static str| -> String {
        match name {
            ENV_HTTP_PORT => config.http_port.to_string(),
            ENV_BIND_ADDRESS => config
                .bind_address
                .map_or_else(|| unset(name), |a| a.to_string()),
            ENV_SSL_PORT => tls.map_or_else(no_tls, |t| t.port.to_string()),
            ENV_SSL_CERT => tls.map_or_else(|| unset(name), |t| t.cert.display().to_string()),
            ENV_SSL_KEY => tls.map_or_else(|| unset(name), |t| t.key.display().to_string()),
            ENV_SSL_CHECK_RELOAD_SECONDS => tls.map_or_else(no_tls, |t| {
                t.check_reload
                    .map_or_else(|| "0 (off)".to_owned(), |d| d.as_secs().to_string())
            }),
            ENV_CONTROL_BASE_URL => control.map_or_else(|| unset(name), |c| mask_str(&c.url)),
            ENV_CONTROL_SECRET => match control {
                None => no_control(),
                Some(c) if c.secret.is_empty() => unset(name),
                Some(_) => MASK.to_owned(),
            },
            ENV_EXTERNAL_IP => control.map_or_else(no_control, |c| {
                c.external_ip.clone().unwrap_or_else(|| unset(name))
            }),
            ENV_EXTERNAL_PORT => control.map_or_else(no_control, |c| {
                c.external_port.clone().unwrap_or_else(|| unset(name))
            }),
            ENV_EXTERNAL_SSL => control.map_or_else(no_control, |c| yes_no(c.external_ssl)),
            ENV_PLAY_WHITELIST => config.play_whitelist.to_string(),
            ENV_MAX_IP_CONCURRENT_CONNECTIONS => config.max_ip_concurrent.to_string(),
            ENV_CONCURRENT_LIMIT_WHITELIST => config.concurrent_limit_whitelist.to_string(),
            ENV_GOP_CACHE_SIZE_MB => (config.gop_cache_bytes / MIB).to_string(),
            ENV_ID_MAX_LENGTH => config.id_max_length.to_string(),
            ENV_LOG_REQUESTS => yes_no(config.log_requests),
            ENV_LOG_DEBUG => yes_no(config.log_debug),
            ENV_DISABLE_TEST_CLIENT => yes_no(config.disable_test_client),
            ENV_HEARTBEAT_SECONDS => config.heartbeat.as_secs().to_string(),
            ENV_IDLE_TIMEOUT_SECONDS => config.idle_timeout.as_secs().to_string(),
            ENV_RECEIVER_QUEUE_MB => (config.receiver_queue_bytes / MIB).to_string(),
            ENV_LAGGING_RECEIVERS => config.lagging_receivers.as_str().to_owned(),
            ENV_INGEST_LEAD_MB => config.ingest_lead_mb.to_string(),
            ENV_MAX_MESSAGE_SIZE_MB => (config.max_message_bytes >> 20).to_string(),
            ENV_MAX_CLIENT_MESSAGE_KB => (config.max_client_message_bytes >> 10).to_string(),
            ENV_UPGRADE_TIMEOUT_SECONDS => config.upgrade_timeout.as_secs().to_string(),
            ENV_PLAY_WAIT_SECONDS => config.play_wait.as_secs().to_string(),
            ENV_MAX_REQUEST_HEAD_KB => (config.max_request_head_bytes >> 10).to_string(),
            ENV_PUBLISH_AUTH_TIMEOUT_SECONDS => {
                control.map_or_else(no_control, |c| c.publish_auth_timeout.as_secs().to_string())
            }
            ENV_CONTROL_RETRY_SECONDS => {
                control.map_or_else(no_control, |c| c.retry_delay.as_secs().to_string())
            }
            ENV_SHUTDOWN_GRACE_SECONDS => config.shutdown_grace.as_secs().to_string(),
            ENV_METRICS_ADDRESS => config
                .metrics_address
                .map_or_else(|| unset(name), |a| a.to_string()),
            ENV_LISTEN_BACKLOG => config.listen_backlog.to_string(),
            ENV_AUTH_HTTP_URL => auth.map_or_else(|| unset(name), |a| mask(&a.url)),
            ENV_AUTH_HTTP_KINDS => auth.map_or_else(no_auth, |a| a.kinds.join(",")),
            ENV_AUTH_HTTP_TIMEOUT_SECONDS => {
                auth.map_or_else(no_auth, |a| a.timeout.as_secs().to_string())
            }
            ENV_AUTH_HTTP_MAX_INFLIGHT => auth.map_or_else(no_auth, |a| a.max_inflight.to_string()),
            ENV_EVENT_WEBHOOK_URL => config
                .operator
                .webhook_url
                .as_ref()
                .map_or_else(|| unset(name), mask),
            ENV_API_TOKEN => match &config.operator.api_token {
                None => unset(name),
                Some(_) => MASK.to_owned(),
            },
            ENV_ORIGIN_URLS => edge.map_or_else(|| unset(name), EdgeSettings::shown),
            ENV_EDGE_RETRY_SECONDS => edge.map_or_else(no_edge, |e| e.retry.as_secs().to_string()),
            ENV_EDGE_LINGER_SECONDS => {
                edge.map_or_else(no_edge, |e| e.linger.as_secs().to_string())
            }
            // A name in the table without a rendering here fails the unit tests.
            _ => "?".to_owned(),
        }
    };
    VARS.iter().map(|v| (v.name, value(v.name))).collect()
}

/// The names the parser reads, in the order it first reads them, found by
/// running it with a recording lookup on environments that switch TLS and the
/// coordinator off and on. Independent of [`VARS`]: tests compare the two.
pub fn parser_names() -> Vec<String> {
    let seen = std::cell::RefCell::new(Vec::<String>::new());
    let on: &[(&str, &str)] = &[
        (ENV_SSL_CERT, "cert.pem"),
        (ENV_SSL_KEY, "key.pem"),
        (ENV_CONTROL_BASE_URL, "ws://127.0.0.1:9"),
        (ENV_AUTH_HTTP_URL, "http://127.0.0.1:9"),
        (ENV_ORIGIN_URLS, "ws://127.0.0.1:9"),
    ];
    for env in [&[][..], on] {
        let _ = Config::from_lookup(|name| {
            let mut seen = seen.borrow_mut();
            if !seen.iter().any(|n| n == name) {
                seen.push(name.to_owned());
            }
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        });
    }
    seen.into_inner()
}

/// README's configuration table, generated from [`VARS`].
pub fn markdown_table() -> String {
    let mut out = String::from("| variable | default | meaning |\n| --- | --- | --- |\n");
    for v in VARS {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} |",
            v.name,
            v.default.shown(),
            v.meaning
        );
    }
    out
}

/// The packaged `/etc/ws-stream-server/env`: every variable commented out with its default.
pub fn env_file() -> String {
    let mut out = String::from(
        "# ws-stream-server settings, read by the systemd unit (EnvironmentFile=).\n\
         # Every variable is shown commented out with its default; uncomment and\n\
         # edit to change one, then: systemctl restart ws-stream-server\n\
         # Check the result with: ws-stream-server --check-config (see README).\n\
         # Empty values count as unset.\n",
    );
    for v in VARS {
        let meaning = v.meaning.replace('`', "");
        out.push('\n');
        let _ = writeln!(out, "# {meaning}");
        match v.default {
            DefaultValue::Literal(d) => {
                let _ = writeln!(out, "#{}={d}", v.name);
            }
            DefaultValue::Described(what) => {
                if what != "—" {
                    let _ = writeln!(out, "# unset: {what}");
                }
                let _ = writeln!(out, "#{}=", v.name);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
