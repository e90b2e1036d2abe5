use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::*;

fn load(vars: &[(&str, &str)]) -> Loaded {
    let map: HashMap<&str, &str> = vars.iter().copied().collect();
    match Config::from_lookup(|name| map.get(name).map(|v| (*v).to_owned())) {
        Ok(loaded) => loaded,
        Err(e) => panic!("{vars:?} rejected: {e}"),
    }
}

/// TLS and the coordinator on, so that every setting is used.
const ALL_ON: &[(&str, &str)] = &[
    (ENV_SSL_CERT, "/etc/cert.pem"),
    (ENV_SSL_KEY, "/etc/key.pem"),
    (ENV_CONTROL_BASE_URL, "ws://127.0.0.1:9/"),
    (ENV_AUTH_HTTP_URL, "http://127.0.0.1:9/auth"),
    (ENV_ORIGIN_URLS, "ws://127.0.0.1:9"),
];

fn table_names() -> Vec<&'static str> {
    VARS.iter().map(|v| v.name).collect()
}

#[test]
fn the_parser_reads_exactly_the_variables_of_the_table() {
    let mut read = parser_names();
    let mut table: Vec<String> = table_names().iter().map(|n| (*n).to_owned()).collect();
    read.sort();
    table.sort();
    assert_eq!(read, table, "parser (left) and VARS (right) differ");
}

#[test]
fn the_table_names_each_variable_once() {
    let mut names = table_names();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), VARS.len());
}

#[test]
fn effective_settings_of_an_empty_environment_are_the_table_defaults() {
    let off = effective(&load(&[]).config);
    let on = effective(&load(ALL_ON).config);
    assert_eq!(off.len(), VARS.len());
    for ((v, off), (_, on)) in VARS.iter().zip(&off).zip(&on) {
        let set_by_all_on = ALL_ON.iter().any(|(k, _)| *k == v.name);
        if off.1.starts_with("not used") {
            assert_eq!(
                on,
                v.default.shown(),
                "{} with TLS and coordinator on",
                v.name
            );
        } else {
            assert_eq!(&off.1, v.default.shown(), "{} unset", v.name);
            if !set_by_all_on {
                assert_eq!(
                    on,
                    v.default.shown(),
                    "{} with TLS and coordinator on",
                    v.name
                );
            }
        }
    }
}

#[test]
fn a_literal_default_behaves_like_unset() {
    let base = effective(&load(ALL_ON).config);
    for v in VARS {
        let DefaultValue::Literal(value) = v.default else {
            continue;
        };
        let mut env = ALL_ON.to_vec();
        env.push((v.name, value));
        let loaded = load(&env);
        assert_eq!(effective(&loaded.config), base, "{}={value}", v.name);
        assert!(
            loaded.warnings.is_empty(),
            "{}: {:?}",
            v.name,
            loaded.warnings
        );
    }
}

#[test]
fn effective_settings_show_what_was_set() {
    let shown = effective(
        &load(&[
            (ENV_HTTP_PORT, "8080"),
            (ENV_BIND_ADDRESS, "[::1]"),
            (ENV_PLAY_WHITELIST, "10.0.0.0/8, ::1"),
            (ENV_GOP_CACHE_SIZE_MB, "0"),
            (ENV_LOG_DEBUG, "on"),
            (ENV_METRICS_ADDRESS, "127.0.0.1:9090"),
        ])
        .config,
    );
    let get = |name| {
        shown
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get(ENV_HTTP_PORT), Some("8080"));
    assert_eq!(get(ENV_BIND_ADDRESS), Some("::1"));
    assert_eq!(get(ENV_PLAY_WHITELIST), Some("10.0.0.0/8, ::1/128"));
    assert_eq!(get(ENV_GOP_CACHE_SIZE_MB), Some("0"));
    assert_eq!(get(ENV_LOG_DEBUG), Some("YES"));
    assert_eq!(get(ENV_METRICS_ADDRESS), Some("127.0.0.1:9090"));
}

#[test]
fn secrets_are_masked() {
    assert!(find(ENV_CONTROL_SECRET).is_some_and(|v| v.secret));
    let mut env = ALL_ON.to_vec();
    env.retain(|(k, _)| *k != ENV_CONTROL_BASE_URL);
    env.retain(|(k, _)| *k != ENV_AUTH_HTTP_URL && *k != ENV_EVENT_WEBHOOK_URL);
    env.push((
        ENV_CONTROL_BASE_URL,
        "wss://user:pa55word@127.0.0.1:9/x?token=t0ken1",
    ));
    env.push((ENV_AUTH_HTTP_URL, "http://127.0.0.1:9/auth?key=t0ken2&v=1"));
    env.push((
        ENV_EVENT_WEBHOOK_URL,
        "http://u:pa55word@127.0.0.1:9/hook?sig=t0ken3",
    ));
    for v in VARS.iter().filter(|v| v.secret) {
        env.push((v.name, "s3cr3t-value"));
    }
    let text = format!("{:?}", effective(&load(&env).config));
    assert!(!text.contains("s3cr3t-value"), "{text}");
    assert!(!text.contains("pa55word"), "{text}");
    assert!(!text.contains("t0ken"), "{text}");
    assert!(text.contains("/auth?key=***&v=***"), "{text}");
    assert!(text.contains(MASK), "{text}");
}

fn repo_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// Compares `path` with `want`; with `UPDATE_GENERATED=1` rewrites it instead.
fn in_step(path: &Path, have: &str, want: &str) {
    assert!(
        have == want,
        "{} is out of step with src/config/vars.rs; run UPDATE_GENERATED=1 cargo test --lib config::vars \
         to regenerate it. Expected:\n{want}",
        path.display()
    );
}

fn regenerate(path: &Path, text: &str) -> bool {
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        std::fs::write(path, text).unwrap();
        return true;
    }
    false
}

#[test]
fn readme_configuration_table_is_generated_from_the_table() {
    let path = repo_file("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let header = "| variable | default | meaning |\n";
    let start = readme
        .find(header)
        .expect("README has the configuration table");
    let end = readme[start..]
        .find("\n\n")
        .map_or(readme.len(), |i| start + i + 1);
    let want = markdown_table();
    if readme[start..end] != want {
        let updated = format!("{}{want}{}", &readme[..start], &readme[end..]);
        if regenerate(&path, &updated) {
            return;
        }
    }
    in_step(&path, &readme[start..end], &want);
}

#[test]
fn packaged_env_file_is_generated_from_the_table() {
    let path = repo_file("pkg/env");
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    let want = env_file();
    if have != want && regenerate(&path, &want) {
        return;
    }
    in_step(&path, &have, &want);
}

#[test]
fn env_file_comments_out_every_variable_with_its_default() {
    let text = env_file();
    for v in VARS {
        let line = match v.default {
            DefaultValue::Literal(d) => format!("\n#{}={d}\n", v.name),
            DefaultValue::Described(_) => format!("\n#{}=\n", v.name),
        };
        assert!(text.contains(&line), "{line:?} missing");
    }
    assert!(
        !text.lines().any(|l| !l.is_empty() && !l.starts_with('#')),
        "every line is a comment"
    );
}
