use std::collections::HashMap;

use super::*;

fn load(vars: &[(&str, &str)]) -> Result<Loaded, ConfigErrors> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_lookup(|name| map.get(name).cloned())
}

fn errors(vars: &[(&str, &str)]) -> Vec<ConfigError> {
    match load(vars) {
        Ok(_) => panic!("{vars:?} should be rejected"),
        Err(e) => e.0,
    }
}

#[test]
fn defaults() {
    let c = load(&[]).unwrap().config;
    assert_eq!(c.http_port, 80);
    assert_eq!(c.bind_address, None);
    assert!(c.tls.is_none());
    assert!(c.control.is_none());
    assert!(c.play_whitelist.contains("8.8.8.8".parse().unwrap()));
    assert!(!c
        .concurrent_limit_whitelist
        .contains("127.0.0.1".parse().unwrap()));
    assert_eq!(c.max_ip_concurrent, 4);
    assert_eq!(c.gop_cache_bytes, 256 * MIB);
    assert_eq!(c.id_max_length, 128);
    assert!(c.log_requests);
    assert!(!c.log_debug);
    assert!(!c.disable_test_client);
    assert_eq!(c.heartbeat, Duration::from_secs(20));
    assert_eq!(c.idle_timeout, Duration::from_secs(60));
    assert_eq!(c.max_message_bytes, 64 << 20);
}

#[test]
fn ports() {
    for (value, want) in [("0", 0), ("8080", 8080), (" 65535 ", 65535)] {
        assert_eq!(
            load(&[("HTTP_PORT", value)]).unwrap().config.http_port,
            want
        );
    }
    for value in ["8o", "-1", "65536", "80.0"] {
        let errs = errors(&[("HTTP_PORT", value)]);
        assert_eq!(errs[0].var, "HTTP_PORT");
        assert_eq!(errs[0].value, value);
    }
}

#[test]
fn error_message_names_variable_value_and_expectation() {
    let errs = errors(&[("HTTP_PORT", "8o")]);
    assert_eq!(
        errs[0].to_string(),
        "invalid HTTP_PORT \"8o\": expected a port number 0-65535"
    );
}

#[test]
fn every_bad_variable_is_reported() {
    let errs = errors(&[
        ("HTTP_PORT", "x"),
        ("MAX_IP_CONCURRENT_CONNECTIONS", "many"),
        ("GOP_CACHE_SIZE_MB", "-3"),
        ("LOG_DEBUG", "maybe"),
        ("PLAY_WHITELIST", "1.2.3.4, nope"),
    ]);
    let vars: Vec<&str> = errs.iter().map(|e| e.var).collect();
    assert_eq!(
        vars,
        [
            "HTTP_PORT",
            "PLAY_WHITELIST",
            "MAX_IP_CONCURRENT_CONNECTIONS",
            "GOP_CACHE_SIZE_MB",
            "LOG_DEBUG"
        ]
    );
}

#[test]
fn numbers_are_honoured() {
    let c = load(&[
        ("MAX_IP_CONCURRENT_CONNECTIONS", "10"),
        ("GOP_CACHE_SIZE_MB", "0"),
        ("ID_MAX_LENGTH", "5"),
    ])
    .unwrap()
    .config;
    assert_eq!(c.max_ip_concurrent, 10);
    assert_eq!(c.gop_cache_bytes, 0);
    assert_eq!(c.id_max_length, 5);
    assert_eq!(errors(&[("ID_MAX_LENGTH", "0")])[0].var, "ID_MAX_LENGTH");
    assert_eq!(
        errors(&[("HEARTBEAT_SECONDS", "0")])[0].var,
        "HEARTBEAT_SECONDS"
    );
}

#[test]
fn booleans() {
    for (value, want) in [
        ("YES", true),
        ("yes", true),
        ("True", true),
        ("on", true),
        ("1", true),
        ("NO", false),
        ("false", false),
        ("Off", false),
        ("0", false),
    ] {
        assert_eq!(parse_bool(value), Some(want), "{value}");
        let c = load(&[("LOG_DEBUG", value)]).unwrap().config;
        assert_eq!(c.log_debug, want);
    }
    for value in ["Y", "2", "enabled"] {
        assert_eq!(parse_bool(value), None);
        assert_eq!(
            errors(&[("DISABLE_TEST_CLIENT", value)])[0].var,
            "DISABLE_TEST_CLIENT"
        );
    }
}

#[test]
fn booleans_warn_where_the_original_differs() {
    let loaded = load(&[("DISABLE_TEST_CLIENT", "yes"), ("LOG_REQUESTS", "false")]).unwrap();
    assert!(loaded.config.disable_test_client);
    assert!(!loaded.config.log_requests);
    assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
    assert!(loaded
        .warnings
        .iter()
        .any(|w| w.contains("DISABLE_TEST_CLIENT")));
    let same = load(&[("DISABLE_TEST_CLIENT", "YES"), ("LOG_REQUESTS", "NO")]).unwrap();
    assert!(same.warnings.is_empty());
}

#[test]
fn bind_address_forms() {
    for (value, want) in [
        ("127.0.0.1", "127.0.0.1"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("0.0.0.0", "0.0.0.0"),
    ] {
        let c = load(&[("BIND_ADDRESS", value)]).unwrap().config;
        assert_eq!(c.bind_address, Some(want.parse().unwrap()));
    }
    for value in ["localhost", "[::1", "1.2.3.4:80"] {
        assert_eq!(errors(&[("BIND_ADDRESS", value)])[0].var, "BIND_ADDRESS");
    }
}

#[test]
fn tls_needs_both_files() {
    let c = load(&[
        ("SSL_CERT", "c.pem"),
        ("SSL_KEY", "k.pem"),
        ("SSL_PORT", "8443"),
    ])
    .unwrap()
    .config;
    let tls = c.tls.unwrap();
    assert_eq!(tls.port, 8443);
    assert_eq!(tls.check_reload, Some(Duration::from_secs(60)));
    assert_eq!(errors(&[("SSL_CERT", "c.pem")])[0].var, "SSL_CERT");
    assert_eq!(errors(&[("SSL_KEY", "k.pem")])[0].var, "SSL_KEY");
    let no_reload = load(&[
        ("SSL_CERT", "c"),
        ("SSL_KEY", "k"),
        ("SSL_CHECK_RELOAD_SECONDS", "-1"),
    ])
    .unwrap();
    assert_eq!(no_reload.config.tls.unwrap().check_reload, None);
}

#[test]
fn control_url_resolution() {
    for (base, want) in [
        ("ws://h:8080/", "ws://h:8080/ws/control/wss"),
        ("ws://h:8080/x?y=1", "ws://h:8080/ws/control/wss"),
        ("wss://coord.example", "wss://coord.example/ws/control/wss"),
        ("ws://10.0.0.1:8080", "ws://10.0.0.1:8080/ws/control/wss"),
    ] {
        assert_eq!(control_url(base).as_deref(), Some(want), "{base}");
    }
    for base in ["http://h/", "h:8080", "ws://", "::"] {
        assert_eq!(control_url(base), None, "{base}");
        assert_eq!(
            errors(&[("CONTROL_BASE_URL", base)])[0].var,
            "CONTROL_BASE_URL"
        );
    }
}

#[test]
fn control_settings_and_external_address_checks() {
    let loaded = load(&[
        ("CONTROL_BASE_URL", "ws://127.0.0.1:9/"),
        ("CONTROL_SECRET", "s3cret"),
        ("EXTERNAL_IP", " 2001:db8::1 "),
        ("EXTERNAL_PORT", "8443"),
        ("EXTERNAL_SSL", "YES"),
    ])
    .unwrap();
    let control = loaded.config.control.unwrap();
    assert!(control.external_ssl);
    assert_eq!(control.secret, "s3cret");
    assert_eq!(control.external_ip.as_deref(), Some("2001:db8::1"));
    assert_eq!(control.external_port.as_deref(), Some("8443"));
    assert!(!format!("{control:?}").contains("s3cret"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    for (var, value) in [
        ("EXTERNAL_IP", "my-host"),
        ("EXTERNAL_IP", "1.2.3"),
        ("EXTERNAL_PORT", "http"),
        ("EXTERNAL_PORT", "0"),
        ("EXTERNAL_PORT", "65536"),
    ] {
        let errors = load(&[("CONTROL_BASE_URL", "ws://127.0.0.1:9/"), (var, value)]).unwrap_err();
        assert_eq!(errors.0.len(), 1, "{var}={value}: {errors}");
        assert_eq!((errors.0[0].var, errors.0[0].value.as_str()), (var, value));
    }
}

#[test]
fn whitelists() {
    let c = load(&[
        ("PLAY_WHITELIST", "127.0.0.1, ::1"),
        ("CONCURRENT_LIMIT_WHITELIST", "*"),
    ])
    .unwrap()
    .config;
    assert!(c.play_whitelist.contains("127.0.0.1".parse().unwrap()));
    assert!(!c.play_whitelist.contains("127.0.0.2".parse().unwrap()));
    assert!(c
        .concurrent_limit_whitelist
        .contains("8.8.8.8".parse().unwrap()));
}

proptest::proptest! {
    #[test]
    fn any_values_parse_or_are_reported_never_panic(
        values in proptest::collection::vec("\\PC{0,24}", 12),
    ) {
        let names = [
            ENV_HTTP_PORT, ENV_BIND_ADDRESS, ENV_PLAY_WHITELIST, ENV_MAX_IP_CONCURRENT_CONNECTIONS,
            ENV_CONCURRENT_LIMIT_WHITELIST, ENV_GOP_CACHE_SIZE_MB, ENV_LOG_REQUESTS, ENV_CONTROL_BASE_URL,
            ENV_SSL_CHECK_RELOAD_SECONDS, ENV_EXTERNAL_PORT, ENV_METRICS_ADDRESS, ENV_RECEIVER_QUEUE_MB,
        ];
        let vars: Vec<(&str, &str)> = names.iter().copied().zip(values.iter().map(String::as_str)).collect();
        match load(&vars) {
            Ok(_) => {}
            Err(errors) => {
                for e in errors.0 {
                    proptest::prop_assert!(names.contains(&e.var));
                    let prefix = format!("invalid {} ", e.var);
                    proptest::prop_assert!(e.to_string().starts_with(&prefix));
                }
            }
        }
    }

    #[test]
    fn whitelists_of_addresses_always_parse(
        ips in proptest::collection::vec(proptest::prelude::any::<std::net::IpAddr>(), 1..6),
        prefix in 0u8..=32,
    ) {
        let mut list: Vec<String> = ips.iter().map(ToString::to_string).collect();
        list.push(format!("10.0.0.0/{prefix}"));
        let set = AddrSet::parse(&list.join(" , "), false).unwrap();
        for ip in ips {
            proptest::prop_assert!(set.contains(ip));
        }
    }
}

#[test]
fn sizes_and_times_that_would_overflow_are_refused() {
    for (var, value) in [
        ("RECEIVER_QUEUE_MB", "18446744073709551615"),
        ("GOP_CACHE_SIZE_MB", "99999999999"),
        ("MAX_MESSAGE_SIZE_MB", "5000"),
        ("MAX_REQUEST_HEAD_KB", "4"),
        ("MAX_REQUEST_HEAD_KB", "18014398509481984"),
        ("HEARTBEAT_SECONDS", "1000000000000"),
        ("IDLE_TIMEOUT_SECONDS", "40000000"),
    ] {
        let errs = errors(&[(var, value)]);
        assert_eq!(errs[0].var, var, "{value}");
        assert!(errs[0].expected.contains(" to "), "{}", errs[0]);
    }
    let c = load(&[
        ("MAX_REQUEST_HEAD_KB", "8"),
        ("RECEIVER_QUEUE_MB", "1048576"),
    ])
    .unwrap()
    .config;
    assert_eq!(c.max_request_head_bytes, 8 << 10);
    assert_eq!(c.receiver_queue_bytes, 1 << 40);
}

#[test]
fn origin_urls_are_ws_or_wss_bases_and_turn_edge_mode_on() {
    assert!(load(&[]).unwrap().config.edge.is_none());
    let c = load(&[(
        ENV_ORIGIN_URLS,
        " ws://127.0.0.1:8080 , wss://origin.example/live/ ,",
    )])
    .unwrap()
    .config;
    let edge = c.edge.expect("edge mode");
    let origins: Vec<&str> = edge.origins.iter().map(url::Url::as_str).collect();
    assert_eq!(
        origins,
        ["ws://127.0.0.1:8080/", "wss://origin.example/live/"]
    );
    assert_eq!(edge.retry, Duration::from_secs(2));
    assert_eq!(edge.linger, Duration::from_secs(10));
    let c = load(&[
        (ENV_ORIGIN_URLS, "ws://o"),
        (ENV_EDGE_RETRY_SECONDS, "5"),
        (ENV_EDGE_LINGER_SECONDS, "0"),
    ])
    .unwrap()
    .config;
    let edge = c.edge.expect("edge mode");
    assert_eq!(
        (edge.retry, edge.linger),
        (Duration::from_secs(5), Duration::ZERO)
    );
    for bad in [
        "http://o",
        "ws://o,ftp://p",
        "ws://",
        "ws://o/?token=1",
        "ws://o/#x",
        ",",
        "o:80",
    ] {
        let errs = errors(&[(ENV_ORIGIN_URLS, bad)]);
        assert_eq!(errs.len(), 1, "{bad}");
        assert_eq!(errs[0].var, ENV_ORIGIN_URLS, "{bad}");
    }
    let errs = errors(&[(ENV_ORIGIN_URLS, "ws://o"), (ENV_EDGE_RETRY_SECONDS, "0")]);
    assert_eq!(errs[0].var, ENV_EDGE_RETRY_SECONDS);
}
