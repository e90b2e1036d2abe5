//! The browser test client, built into the binary (docs/PROTOCOL.md §6): served on `/`
//! and its asset paths unless `DISABLE_TEST_CLIENT` is set.

/// A built-in file: content type and bytes.
pub(crate) struct Asset {
    pub content_type: &'static str,
    pub body: &'static [u8],
}

const ASSETS: &[(&str, Asset)] = &[
    (
        "/index.html",
        Asset {
            content_type: "text/html; charset=utf-8",
            body: include_bytes!("test_client/index.html"),
        },
    ),
    (
        "/app.js",
        Asset {
            content_type: "text/javascript; charset=utf-8",
            body: include_bytes!("test_client/app.js"),
        },
    ),
    (
        "/style.css",
        Asset {
            content_type: "text/css; charset=utf-8",
            body: include_bytes!("test_client/style.css"),
        },
    ),
];

/// The asset served at `path`, if any; `/` is the page itself.
pub(crate) fn asset(path: &str) -> Option<&'static Asset> {
    let path = if path == "/" { "/index.html" } else { path };
    ASSETS.iter().find(|(p, _)| *p == path).map(|(_, a)| a)
}
