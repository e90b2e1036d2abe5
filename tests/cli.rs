//! The command line through the real binary: `--help`, `--version`,
//! `--check-config`, bad arguments.

mod common;

use std::net::TcpListener;

use common::*;
use ws_stream_server::config::vars::parser_names;

/// The variable names `--help` lists (first word of each line of its variables section).
fn help_names(help: &str) -> Vec<String> {
    let section = help
        .split("Environment variables")
        .nth(1)
        .unwrap_or_else(|| panic!("no variables section in --help:\n{help}"));
    section
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn help_lists_every_variable_the_parser_reads() {
    let run = run_args(&["--help"], &[], None);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.is_empty(), "{run:?}");
    assert!(run.stdout.contains("--check-config"), "{}", run.stdout);
    let mut listed = help_names(&run.stdout);
    let mut read = parser_names();
    assert!(read.len() >= 29, "the parser reads {read:?}");
    listed.sort();
    read.sort();
    assert_eq!(listed, read, "--help (left) and the parser (right) differ");
    for line in run.stdout.lines() {
        assert!(line.chars().count() <= 150, "long line in --help: {line}");
    }
    let short = run_args(&["-h"], &[], None);
    assert_eq!((short.code, short.stdout), (0, run.stdout));
}

#[test]
fn version_prints_name_and_version() {
    let run = run_args(&["--version"], &[], None);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        format!("ws-stream-server {}\n", env!("CARGO_PKG_VERSION"))
    );
}

/// The value `--check-config` shows for `name`.
fn shown<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(" = ")?;
            (n.trim() == name).then_some(v)
        })
        .unwrap_or_else(|| panic!("{name} not shown:\n{stdout}"))
}

#[test]
fn check_config_prints_the_effective_settings_masks_secrets_and_binds_nothing() {
    // A port taken by the test: a start would fail to bind it, the check must not try.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let metrics = format!("127.0.0.1:{port}");
    let secret = "Sup3r-s3cret-value";
    let run = run_args(
        &["--check-config"],
        &[
            ("HTTP_PORT", &port),
            ("METRICS_ADDRESS", &metrics),
            ("CONTROL_BASE_URL", "ws://127.0.0.1:9/x"),
            ("CONTROL_SECRET", secret),
            ("GOP_CACHE_SIZE_MB", "2"),
            ("LOG_DEBUG", "1"),
        ],
        Some("ID_MAX_LENGTH=99\nGOP_CACHE_SIZE_MB=1\n"),
    );
    assert_eq!(run.code, 0, "{run:?}");
    let out = &run.stdout;
    assert!(
        !out.contains(secret) && !run.stderr.contains(secret),
        "{run:?}"
    );
    assert_eq!(shown(out, "CONTROL_SECRET"), "***");
    assert_eq!(shown(out, "HTTP_PORT"), port);
    assert_eq!(shown(out, "METRICS_ADDRESS"), metrics);
    assert_eq!(
        shown(out, "CONTROL_BASE_URL"),
        "ws://127.0.0.1:9/ws/control/wss"
    );
    // From .env; the real environment wins over it.
    assert_eq!(shown(out, "ID_MAX_LENGTH"), "99");
    assert_eq!(shown(out, "GOP_CACHE_SIZE_MB"), "2");
    assert_eq!(shown(out, "HEARTBEAT_SECONDS"), "20");
    // The warning a start would log.
    assert!(out.contains("warning: LOG_DEBUG"), "{out}");
    assert!(!out.contains("listening"), "{out}");
    let names: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_once(" = ").map(|(n, _)| n.trim()))
        .collect();
    let mut read = parser_names();
    read.sort();
    let mut names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    names.sort();
    assert_eq!(names, read, "every setting is shown");
    drop(taken);
}

#[test]
fn check_config_reports_every_error_and_exits_2() {
    let secret = "An0ther-s3cret";
    let run = run_args(
        &["--check-config"],
        &[
            ("HTTP_PORT", "8o"),
            ("CONTROL_SECRET", secret),
            ("CONTROL_BASE_URL", "ws://127.0.0.1:9"),
        ],
        Some("LOG_DEBUG=maybe\n"),
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("invalid HTTP_PORT \"8o\""), "{run:?}");
    assert!(
        run.stderr.contains("invalid LOG_DEBUG \"maybe\""),
        "{run:?}"
    );
    assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret));
    assert!(!run.stdout.contains("configuration: OK"), "{run:?}");
}

#[test]
fn check_config_loads_the_tls_files_like_a_start() {
    let run = run_args(
        &["--check-config"],
        &[("SSL_CERT", "missing.pem"), ("SSL_KEY", "missing.key")],
        None,
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("missing.pem"), "{run:?}");
}

#[test]
fn unknown_arguments_are_one_line_errors_with_exit_2() {
    for args in [
        &["--nope"][..],
        &["serve"],
        &["--help", "--version"],
        &["--check-config", "x"],
    ] {
        let run = run_args(args, &[], None);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {run:?}");
        assert!(
            run.stderr.starts_with("ws-stream-server: "),
            "{args:?}: {run:?}"
        );
    }
}

#[test]
fn a_dotenv_that_cannot_be_parsed_completely_is_a_start_up_error() {
    let cases = [
        ("LOG_DEBUG=YES\nMY VAR=1\nHTTP_PORT=0\n", 2, "MY VAR"),
        ("# comment\n\nA=1\nB=x\0y\n", 4, "NUL"),
        ("A=1\nB=\"open\nstill open\n", 2, "quote"),
        ("A=1\nB=\\q\n", 2, "\"B\""),
    ];
    for (text, line, what) in cases {
        for args in [&[][..], &["--check-config"]] {
            let run = run_args(args, &[], Some(text));
            assert_eq!(run.code, 2, "{text:?} {args:?}: {run:?}");
            // One line; --check-config adds its count of errors.
            let lines: Vec<&str> = run.stderr.lines().collect();
            let err = lines.first().copied().unwrap_or_default();
            let want = if args.is_empty() { 1 } else { 2 };
            assert_eq!(lines.len(), want, "{text:?} {args:?}: {run:?}");
            assert!(
                err.contains(&format!(".env line {line}:")) && err.contains(what),
                "{text:?} {args:?}: {err}"
            );
            assert!(!run.stdout.contains("configuration: OK"), "{run:?}");
            // A value may be a secret: it is never echoed.
            assert!(!err.contains("\\q") && !err.contains("=1"), "{err}");
        }
    }
    // A quoted value may span lines; the line after it still counts.
    let run = run_args(
        &["--check-config"],
        &[],
        Some("A=\"two\nlines\"\nLOG_DEBUG=YES\n"),
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(shown(&run.stdout, "LOG_DEBUG"), "YES", "{run:?}");
}
