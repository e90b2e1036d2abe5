use proptest::prelude::*;

use super::*;
use http::header::CONTENT_TYPE;

#[test]
fn routes() {
    assert_eq!(route("/"), Route::Root);
    assert_eq!(
        route("/a/b/c"),
        Route::Stream {
            channel: "a",
            key: "b",
            kind: "c"
        }
    );
    assert_eq!(
        route("//k/publish"),
        Route::Stream {
            channel: "",
            key: "k",
            kind: "publish"
        }
    );
    for other in [
        "",
        "/a",
        "/a/b",
        "/a/b/c/",
        "/a/b/c/d",
        "a/b/c",
        "/index.html",
    ] {
        assert_eq!(route(other), Route::Other(other), "{other}");
    }
}

#[test]
fn ids() {
    assert!(valid_id("Abc_09-x", 128));
    assert!(valid_id(&"a".repeat(128), 128));
    assert!(!valid_id(&"a".repeat(129), 128));
    for bad in ["", "c%41", "a.b", "é", "a b", "a+b"] {
        assert!(!valid_id(bad, 128), "{bad}");
    }
}

#[test]
fn validation_order() {
    let cases = [
        (("", "", "nope"), Err(Refusal::InvalidChannel)),
        (("c", "", "nope"), Err(Refusal::InvalidKey)),
        (("c", "k", "nope"), Err(Refusal::InvalidKind)),
        (("c", "k", "PUBLISH"), Err(Refusal::InvalidKind)),
        (("c", "k", "publish"), Ok(Kind::Publish)),
        (("c", "k", "receive"), Ok(Kind::Receive)),
        (
            ("c", "k", "receive-clear-cache"),
            Ok(Kind::ReceiveClearCache),
        ),
        (("c", "k", "probe"), Ok(Kind::Probe)),
    ];
    for ((c, k, kind), want) in cases {
        assert_eq!(validate(c, k, kind, 128), want);
    }
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_static(v));
    }
    h
}

#[test]
fn upgrade_checks() {
    let good = [
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    assert_eq!(
        check_upgrade(&Method::GET, Version::HTTP_11, &headers(&good)),
        Ok(())
    );
    assert_eq!(
        check_upgrade(&Method::POST, Version::HTTP_11, &headers(&good)),
        Err(Refusal::MethodNotAllowed)
    );
    assert_eq!(
        check_upgrade(&Method::POST, Version::HTTP_11, &headers(&[])),
        Err(Refusal::BadRequest)
    );
    for drop in 0..good.len() {
        let partial: Vec<_> = good
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != drop)
            .map(|(_, p)| *p)
            .collect();
        assert_eq!(
            check_upgrade(&Method::GET, Version::HTTP_11, &headers(&partial)),
            Err(Refusal::BadRequest),
            "without {}",
            good[drop].0
        );
    }
    let mut v12 = good;
    v12[2] = ("sec-websocket-version", "12");
    assert_eq!(
        check_upgrade(&Method::GET, Version::HTTP_11, &headers(&v12)),
        Err(Refusal::BadRequest)
    );
    let mut blank = good;
    blank[3] = ("sec-websocket-key", " ");
    assert_eq!(
        check_upgrade(&Method::GET, Version::HTTP_11, &headers(&blank)),
        Err(Refusal::BadRequest)
    );
    for bad_key in [
        "x",
        "dGhlIHNhbXBsZSBub25jZR==",
        "dGhlIHNhbXBsZSBub25jZQ",
        "AAAAAAAAAAAAAAAAAAAAAAA=",
    ] {
        let mut bad = good;
        bad[3] = ("sec-websocket-key", bad_key);
        assert_eq!(
            check_upgrade(&Method::GET, Version::HTTP_11, &headers(&bad)),
            Err(Refusal::BadRequest),
            "{bad_key}"
        );
    }
    for old in [Version::HTTP_10, Version::HTTP_09] {
        assert_eq!(
            check_upgrade(&Method::GET, old, &headers(&good)),
            Err(Refusal::BadRequest)
        );
    }
}

#[test]
fn refusal_answers() {
    let r = Refusal::BadRequest.response();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
    assert_eq!(Refusal::PublishDenied.body(), "Invalid Key.");
    assert_eq!(
        Refusal::TooManyRequests.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

proptest! {
    #[test]
    fn route_never_panics_and_streams_have_three_segments(path in "\\PC{0,64}") {
        if let Route::Stream { channel, key, kind } = route(&path) {
            prop_assert_eq!(format!("/{channel}/{key}/{kind}"), path);
        }
    }

    #[test]
    fn valid_ids_are_exactly_the_allowed_alphabet(id in "[A-Za-z0-9_-]{1,20}", junk in "[^A-Za-z0-9_-]") {
        prop_assert!(valid_id(&id, 20));
        let with_junk = format!("{id}{junk}");
        prop_assert!(!valid_id(&with_junk, 40));
    }
}
