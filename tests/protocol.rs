//! RFC 6455 on the server's read side, with raw frames on a TCP socket after a
//! hand-made upgrade (docs/PROTOCOL.md §2.3, "Closing"): frames a client must
//! never send are answered with a 1002 close, on both input paths (a
//! publisher's frame parser, a receiver's byte-at-a-time trickle, and a
//! receiver that has moved to the parser).

mod common;

use common::raw::{close_body, frame, masked, RawWs};
use common::*;

const BINARY: u8 = 0x2;
const TEXT: u8 = 0x1;
const CLOSE: u8 = 0x8;
const PONG: u8 = 0xA;

const VARS: &[(&str, &str)] = &[("MAX_IP_CONCURRENT_CONNECTIONS", "100")];

/// A receiver on the parser path: it has sent a message over the trickle's frame size.
async fn parser_receiver(server: &Server, path: &str) -> RawWs {
    let mut ws = RawWs::connect(server.addr, path).await;
    ws.send(&masked(BINARY, &[0u8; 4000])).await;
    ws
}

#[tokio::test]
async fn unmasked_client_frames_are_refused_with_1002_and_never_relayed() {
    let server = Server::start(VARS);
    let unmasked = frame(0x80 | BINARY, None, b"not masked");

    let mut publisher = RawWs::connect(server.addr, "/um/k/publish").await;
    let mut receiver = ws(&server.url("/um/k/receive")).await;
    server.wait_playing(1).await;
    publisher.send(&unmasked).await;
    assert_eq!(publisher.read_close().await, Some(1002), "publisher");
    assert!(publisher.ends().await);
    // The publisher is gone and its frame went nowhere: the receiver gets the end.
    assert_eq!(expect_close(&mut receiver).await, Some(1000));

    let mut trickle = RawWs::connect(server.addr, "/um2/k/receive").await;
    trickle.send(&frame(0x80 | TEXT, None, b"h")).await;
    assert_eq!(trickle.read_close().await, Some(1002), "trickle receiver");

    let mut parsed = parser_receiver(&server, "/um3/k/receive").await;
    parsed.send(&unmasked).await;
    assert_eq!(parsed.read_close().await, Some(1002), "parser receiver");
}

/// Close payloads RFC 6455 §5.5.1 and §7.4 forbid, and an oversized pong.
fn bad_closes() -> Vec<(&'static str, Vec<u8>)> {
    let mut bad: Vec<(&'static str, Vec<u8>)> =
        [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]
            .iter()
            .map(|&code| ("reserved code", masked(CLOSE, &close_body(code, b""))))
            .collect();
    bad.push(("1-byte payload", masked(CLOSE, &[3])));
    bad.push((
        "126-byte payload",
        masked(CLOSE, &close_body(1000, &[b'a'; 124])),
    ));
    bad.push((
        "invalid UTF-8 reason",
        masked(CLOSE, &close_body(1000, &[b'o', 0xff, 0xfe])),
    ));
    bad.push(("126-byte pong", masked(PONG, &[0u8; 126])));
    bad
}

#[tokio::test]
async fn bad_close_frames_are_answered_1002_on_every_input_path() {
    let server = Server::start(VARS);
    for (i, (what, wire)) in bad_closes().into_iter().enumerate() {
        assert_closes_on_every_path(&server, &format!("bc{i}"), &wire, 1002, what).await;
    }
}

/// Sends `wire` on each input path (a publisher, a trickle receiver, a parser
/// receiver; channels named after `tag`) and expects a close with `code`.
async fn assert_closes_on_every_path(
    server: &Server,
    tag: &str,
    wire: &[u8],
    code: u16,
    what: &str,
) {
    let mut publisher = RawWs::connect(server.addr, &format!("/{tag}p/k/publish")).await;
    publisher.send(wire).await;
    assert_eq!(
        publisher.read_close().await,
        Some(code),
        "publisher, {what}"
    );

    let mut trickle = RawWs::connect(server.addr, &format!("/{tag}t/k/receive")).await;
    trickle.send(wire).await;
    assert_eq!(trickle.read_close().await, Some(code), "receiver, {what}");

    let mut parsed = parser_receiver(server, &format!("/{tag}r/k/receive")).await;
    parsed.send(wire).await;
    assert_eq!(
        parsed.read_close().await,
        Some(code),
        "parser receiver, {what}"
    );
}

#[tokio::test]
async fn valid_close_frames_are_answered_normally() {
    let server = Server::start(VARS);
    let valid: [&[u8]; 5] = [
        &[],
        &close_body(1000, b""),
        &close_body(1001, b"going"),
        &close_body(3000, "r\u{e9}ason".as_bytes()),
        &close_body(4999, &[b'x'; 123]),
    ];
    for (i, body) in valid.iter().enumerate() {
        let wire = masked(CLOSE, body);
        let mut publisher = RawWs::connect(server.addr, &format!("/vc{i}/k/publish")).await;
        publisher.send(&wire).await;
        assert_eq!(
            publisher.read_close().await,
            Some(1000),
            "publisher, {body:?}"
        );
        assert!(publisher.ends().await);

        let mut receiver = RawWs::connect(server.addr, &format!("/vr{i}/k/receive")).await;
        receiver.send(&wire).await;
        assert_eq!(
            receiver.read_close().await,
            Some(1000),
            "receiver, {body:?}"
        );
        assert!(receiver.ends().await);
    }
}

/// A text message that is not UTF-8, whole or split over fragments (RFC 6455 §8.1).
fn bad_texts() -> Vec<(&'static str, Vec<u8>)> {
    let mask = Some([9, 8, 7, 6]);
    let mut split = frame(TEXT, mask, b"ok \xe2\x82");
    split.extend(frame(0x80, mask, b"\xff end"));
    vec![
        ("one frame", masked(TEXT, b"bad \xff\xfe")),
        ("fragments", split),
    ]
}

#[tokio::test]
async fn text_messages_that_are_not_utf8_are_answered_1007_on_every_input_path() {
    let server = Server::start(VARS);
    for (i, (what, wire)) in bad_texts().into_iter().enumerate() {
        assert_closes_on_every_path(&server, &format!("u{i}"), &wire, 1007, what).await;
    }
    // A character split over two fragments is fine: the connection stays and
    // answers a ping.
    let mask = Some([1, 2, 3, 4]);
    let mut wire = frame(TEXT, mask, "ok \u{20ac}".as_bytes().split_at(5).0);
    wire.extend(frame(0x80, mask, "ok \u{20ac}".as_bytes().split_at(5).1));
    wire.extend(masked(0x9, b"still here"));
    let mut receiver = RawWs::connect(server.addr, "/uok/k/receive").await;
    receiver.send(&wire).await;
    loop {
        let f = receiver.read_frame().await.expect("a pong, not an end");
        if f.opcode() == 0xA {
            break;
        }
        assert_eq!(f.opcode(), TEXT, "only heartbeats before the pong");
    }
}
