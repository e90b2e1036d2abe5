//! docs/PROTOCOL.md §2.1–2.2 and §4: every HTTP answer, the order of the
//! checks, the per-IP limit and whitelists through the library's `run()`;
//! start-up errors and what reaches the log through the real binary.

mod common;

use common::*;

const UPGRADE: &str = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

fn request(method: &str, path: &str, upgrade: bool) -> String {
    let extra = if upgrade { UPGRADE } else { "" };
    format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n")
}

#[test]
fn banner_and_not_found() {
    let server = Server::start(&[("DISABLE_TEST_CLIENT", "YES")]);
    let want = format!(
        "Websocket streaming server - Version {}",
        env!("CARGO_PKG_VERSION")
    );
    for method in ["GET", "POST", "PUT"] {
        let (status, _, body) = http(server.addr, &request(method, "/", false));
        assert_eq!((status, body.as_str()), (200, want.as_str()), "{method} /");
    }
    assert_eq!(get(server.addr, "/?x=1"), (200, want.clone()));
    for path in [
        "/a",
        "/a/b",
        "/a/b/c/",
        "/a/b/c/d",
        "/favicon.ico",
        "/a/b/c/?q",
    ] {
        assert_eq!(
            get(server.addr, path),
            (404, "Not found.".to_owned()),
            "{path}"
        );
    }
}

#[test]
fn streaming_refusals_in_order() {
    let server = Server::start(&[("ID_MAX_LENGTH", "8")]);
    let cases = [
        ("//k/publish", 404, "Invalid channel."),
        ("/c%41/k/receive", 404, "Invalid channel."),
        ("/toolongid/k/receive", 404, "Invalid channel."),
        ("/c//nope", 404, "Invalid key."),
        ("/c/toolongid/publish", 404, "Invalid key."),
        ("/c/k/nope", 404, "Invalid connection kind."),
        ("/c/k/PUBLISH", 404, "Invalid connection kind."),
        ("/c/k/", 404, "Invalid connection kind."),
    ];
    for (path, status, body) in cases {
        for upgrade in [false, true] {
            let (got, _, got_body) = http(server.addr, &request("GET", path, upgrade));
            assert_eq!(
                (got, got_body.as_str()),
                (status, body),
                "{path} upgrade={upgrade}"
            );
        }
    }
}

#[test]
fn upgrade_header_answers() {
    let server = Server::start(&[]);
    for kind in ["publish", "receive", "receive-clear-cache", "probe"] {
        let path = format!("/Chan_1/KEY-9/{kind}");
        let (status, head, body) = http(server.addr, &request("GET", &path, false));
        assert_eq!((status, body.as_str()), (400, "Bad Request\n"), "{path}");
        assert!(head
            .to_ascii_lowercase()
            .contains("content-type: text/plain; charset=utf-8"));
        let (status, _, body) = http(server.addr, &request("POST", &path, true));
        assert_eq!(
            (status, body.as_str()),
            (405, "Method Not Allowed\n"),
            "{path}"
        );
        let bad_version = request("GET", &path, true).replace("Version: 13", "Version: 12");
        assert_eq!(http(server.addr, &bad_version).0, 400);
    }
}

#[tokio::test]
async fn query_strings_are_ignored_and_ids_at_max_length_accepted() {
    let server = Server::start(&[("ID_MAX_LENGTH", "16")]);
    let id = "A".repeat(16);
    let mut publisher = ws(&server.url(&format!("/{id}/{id}/publish?token=1"))).await;
    let mut receiver = ws(&server.url(&format!("/{id}/{id}/receive?x=1&y"))).await;
    send(&mut publisher, vec![1, 2, 3]).await;
    assert_eq!(next_binary(&mut receiver).await, [1, 2, 3]);
    let long = "A".repeat(17);
    assert_eq!(
        try_ws(&server.url(&format!("/{long}/{id}/receive")))
            .await
            .err(),
        Some((404, "Invalid channel.".to_owned()))
    );
}

#[tokio::test]
async fn already_publishing() {
    let server = Server::start(&[]);
    let _first = ws(&server.url("/c/k/publish")).await;
    assert_eq!(
        try_ws(&server.url("/c/k/publish")).await.err(),
        Some((403, "Already publishing.".to_owned()))
    );
    // The check comes before the upgrade headers.
    let (status, _, body) = http(server.addr, &request("GET", "/c/k/publish", false));
    assert_eq!((status, body.as_str()), (403, "Already publishing."));
}

#[tokio::test]
async fn per_ip_limit_and_release() {
    let server = Server::start(&[("MAX_IP_CONCURRENT_CONNECTIONS", "2")]);
    let a = ws(&server.url("/c/k/receive")).await;
    let _b = ws(&server.url("/c/k/receive")).await;
    assert_eq!(
        try_ws(&server.url("/c/k/receive")).await.err(),
        Some((429, "Too many requests.".to_owned()))
    );
    // The limit comes first, before any other check; non-streaming paths are not counted.
    assert_eq!(
        get(server.addr, "//x/nope"),
        (429, "Too many requests.".to_owned())
    );
    assert_eq!(get(server.addr, "/").0, 200);
    let me = "127.0.0.1".parse().unwrap();
    close(a).await;
    server.wait_ip_slots(me, 1).await;
    let c = ws(&server.url("/c/k/receive")).await;
    close(c).await;
    server.wait_ip_slots(me, 1).await;
    // 200 refused requests in a row, each after taking a slot, leak none.
    for i in 0..200 {
        let (path, upgrade, want) = match i % 4 {
            0 => ("/c/k/nope", true, (404, "Invalid connection kind.")),
            1 => ("/bad%/k/receive", true, (404, "Invalid channel.")),
            2 => ("/c/k/receive", false, (400, "Bad Request\n")),
            _ => ("/c//probe", true, (404, "Invalid key.")),
        };
        let (status, _, body) = http(server.addr, &request("GET", path, upgrade));
        assert_eq!((status, body.as_str()), want, "{path}");
    }
    assert_eq!(
        server.ip_slots(me),
        1,
        "only the open receiver holds a slot"
    );
    let _x = ws(&server.url("/c/k/receive")).await;
}

#[tokio::test]
async fn concurrent_limit_whitelist_exempts() {
    let server = Server::start(&[
        ("MAX_IP_CONCURRENT_CONNECTIONS", "1"),
        ("CONCURRENT_LIMIT_WHITELIST", "127.0.0.0/8"),
    ]);
    let mut open = Vec::new();
    for _ in 0..5 {
        open.push(ws(&server.url("/c/k/receive")).await);
    }
}

#[tokio::test]
async fn play_whitelist_ipv4() {
    let server = Server::start(&[("PLAY_WHITELIST", "10.0.0.1, 192.168.0.0/16")]);
    for kind in ["receive", "receive-clear-cache", "probe"] {
        assert_eq!(
            try_ws(&server.url(&format!("/c/k/{kind}"))).await.err(),
            Some((403, "Cannot play: Not whitelisted.".to_owned()))
        );
    }
    // Publishing is not subject to the play whitelist.
    let _p = ws(&server.url("/c/k/publish")).await;
    let allowed = Server::start(&[("PLAY_WHITELIST", "10.0.0.1, 127.0.0.1")]);
    let _r = ws(&allowed.url("/c/k/receive")).await;
}

#[tokio::test]
async fn play_whitelist_ipv6() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        panic!("IPv6 loopback is not available on this machine");
    }
    let server = Server::start_on("::1", &[("PLAY_WHITELIST", "::1")]);
    assert!(server.addr.is_ipv6());
    let _r = ws(&server.url("/c/k/receive")).await;
    let denied = Server::start_on("[::1]", &[("PLAY_WHITELIST", "127.0.0.1, fd00::/8")]);
    assert_eq!(
        try_ws(&denied.url("/c/k/probe")).await.err(),
        Some((403, "Cannot play: Not whitelisted.".to_owned()))
    );
}

#[test]
fn bad_configuration_stops_the_server() {
    for (var, value) in [
        ("HTTP_PORT", "8o"),
        ("MAX_IP_CONCURRENT_CONNECTIONS", "lots"),
        ("PLAY_WHITELIST", "1.2.3.4, nope"),
        ("LOG_DEBUG", "maybe"),
        ("CONTROL_BASE_URL", "http://x/"),
        ("SSL_CERT", "only-cert.pem"),
        ("EXTERNAL_PORT", "abc"),
        ("EXTERNAL_PORT", "70000"),
        ("EXTERNAL_IP", "not-an-ip"),
        ("LISTEN_BACKLOG", "0"),
    ] {
        let (code, out) = run_to_exit(&[(var, value)]);
        assert_eq!(code, 2, "{var}={value}: {out}");
        assert!(out.contains(&format!("invalid {var} ")), "{var}: {out}");
        assert!(out.contains(value), "{var}: {out}");
    }
}

#[test]
fn a_port_in_use_exits_non_zero() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, out) = run_to_exit(&[("HTTP_PORT", &port)]);
    assert_ne!(code, 0, "{out}");
}

#[test]
fn malformed_and_oversized_requests_get_clear_answers() {
    let server = Server::start(&[]);
    let (status, _, _) = http(server.addr, "NOT A REQUEST\r\n\r\n");
    assert_eq!(status, 400);
    let long_path = format!("/{}/k/receive", "a".repeat(64 * 1024));
    let (status, _, _) = http(server.addr, &request("GET", &long_path, true));
    assert!(status == 431 || status == 400 || status == 414, "{status}");
    let huge_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "b".repeat(64 * 1024)
    );
    let (status, _, _) = http(server.addr, &huge_header);
    assert!(status == 431 || status == 400, "{status}");
    let non_utf8 = b"GET /\xff\xfe/k/receive HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    use std::io::{Read, Write};
    s.set_read_timeout(Some(STEP)).unwrap();
    s.write_all(non_utf8).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(
        out.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(get(server.addr, "/").0, 200, "server still fine");
}

#[tokio::test]
async fn keys_never_reach_the_log() {
    let key = "SuperSecretKey_4242";
    let mut server =
        Server::process(&[("LOG_DEBUG", "YES"), ("CONTROL_SECRET", "TopSecretValue99")]);
    let mut publisher = ws(&server.url(&format!("/chan/{key}/publish"))).await;
    let mut receiver = ws(&server.url(&format!("/chan/{key}/receive"))).await;
    let _ = try_ws(&server.url(&format!("/chan/{key}/nope"))).await;
    let _ = try_ws(&server.url(&format!("/chan/{key}x/publish"))).await;
    send(&mut publisher, vec![9; 100]).await;
    assert_eq!(next_binary(&mut receiver).await.len(), 100);
    close(publisher).await;
    server.wait_connections("publish", 0).await;
    assert_eq!(server.stop().code(), Some(0));
    let log = server.log_text();
    assert!(log.contains("listening on"));
    assert!(log.contains("#1 (127.0.0.1)"), "{log}");
    assert!(!log.contains(key), "key leaked:\n{log}");
    assert!(!log.contains("TopSecretValue99"), "secret leaked:\n{log}");
}

#[test]
fn standalone_warning_and_log_requests_off() {
    let mut server = Server::process(&[("LOG_REQUESTS", "NO")]);
    assert_eq!(get(server.addr, "/c/k/nope").0, 404);
    server.stop();
    let log = server.log_text();
    assert!(log.contains("running stand-alone"), "{log}");
    assert!(!log.contains("refused"), "{log}");
}

#[test]
fn the_test_client_is_built_in_and_can_be_disabled() {
    let server = Server::start(&[]);
    let (status, head, body) = http(
        server.addr,
        "GET /?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{head}"
    );
    assert!(body.contains("<html"), "{body}");
    for asset in ["/app.js", "/style.css", "/index.html"] {
        assert_eq!(get(server.addr, asset).0, 200, "{asset}");
    }
    for path in ["/nope", "/a/b/c/", "/app.js/x"] {
        assert_eq!(
            get(server.addr, path),
            (404, "Not found.".to_owned()),
            "{path}"
        );
    }
    let disabled = Server::start(&[("DISABLE_TEST_CLIENT", "true")]);
    assert_eq!(
        get(disabled.addr, "/app.js"),
        (404, "Not found.".to_owned())
    );
    assert!(get(disabled.addr, "/")
        .1
        .starts_with("Websocket streaming server - Version"));
}

#[test]
fn an_http_1_0_upgrade_is_refused_before_any_answer() {
    let server = Server::start(&[]);
    for kind in ["publish", "receive", "probe"] {
        let req = request("GET", &format!("/c/k/{kind}"), true).replace("HTTP/1.1", "HTTP/1.0");
        let (status, head, body) = http(server.addr, &req);
        assert_eq!(
            (status, body.as_str()),
            (400, "Bad Request\n"),
            "{kind}: {head}"
        );
    }
    assert_eq!(
        server.metric("ws_stream_connections{kind=\"publish\"}"),
        0.0
    );
}

#[test]
fn up_to_256_headers_within_the_head_size_are_accepted() {
    let server = Server::start(&[]);
    let many: String = (0..150).map(|i| format!("X-H{i:03}: v\r\n")).collect();
    assert!(many.len() < 3 * 1024, "{}", many.len());
    let req = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n");
    assert_eq!(http(server.addr, &req).0, 200);
    // 256 headers in all (Host and Connection included) are fine, 257 are not.
    let tiny: String = (0..254).map(|_| "a:\r\n").collect();
    let req = format!("GET / HTTP/1.1\r\nHost: x\r\n{tiny}Connection: close\r\n\r\n");
    assert_eq!(http(server.addr, &req).0, 200);
    let over: String = (0..255).map(|_| "a:\r\n").collect();
    let req = format!("GET / HTTP/1.1\r\nHost: x\r\n{over}Connection: close\r\n\r\n");
    assert_eq!(http(server.addr, &req).0, 431);
    // Beyond MAX_REQUEST_HEAD_KB: refused too.
    let big = format!("X-Big: {}\r\n", "b".repeat(20 * 1024));
    let req = format!("GET / HTTP/1.1\r\nHost: x\r\n{big}Connection: close\r\n\r\n");
    assert_eq!(http(server.addr, &req).0, 431);
}

#[test]
fn a_sec_websocket_key_must_be_base64_of_16_bytes() {
    let server = Server::start(&[]);
    let good = "dGhlIHNhbXBsZSBub25jZQ==";
    for bad in [
        "x",
        "dGhlIHNhbXBsZSBub25jZQ",
        "dGhlIHNhbXBsZSBub25jZQ=",
        "dGhlIHNhbXBsZSBub25jZR==",
        "dGhlIHNhbXBsZSBub25j",
        "dGhlIHNhbXBsZSBub25jZQ==AAAA",
        "!!!!!!!!!!!!!!!!!!!!!!==",
    ] {
        for kind in ["publish", "receive"] {
            let req = request("GET", &format!("/c/k/{kind}"), true).replace(good, bad);
            let (status, _, body) = http(server.addr, &req);
            assert_eq!((status, body.as_str()), (400, "Bad Request\n"), "{bad:?}");
        }
    }
}
