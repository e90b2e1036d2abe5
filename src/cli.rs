//! The command line. Configuration stays in the environment (as with the
//! original server); the arguments only ask for help, the version, or a check
//! of the configuration without starting.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::process::ExitCode;

use crate::config::vars::{self, VARS};
use crate::config::Config;

pub const NAME: &str = env!("CARGO_PKG_NAME");
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// No arguments: start the server.
    Run,
    Help,
    Version,
    CheckConfig,
    /// A bad command line, with the one-line reason.
    Error(String),
}

/// Reads the arguments after the program name; at most one is accepted.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Action {
    let args: Vec<OsString> = args.into_iter().collect();
    let Some(first) = args.first() else {
        return Action::Run;
    };
    let action = match first.to_str() {
        Some("--help" | "-h") => Action::Help,
        Some("--version" | "-V") => Action::Version,
        Some("--check-config") => Action::CheckConfig,
        _ => {
            return Action::Error(format!(
                "unknown argument {:?} (try --help)",
                first.to_string_lossy()
            ))
        }
    };
    match args.get(1) {
        None => action,
        Some(extra) => Action::Error(format!(
            "unexpected argument {:?} after {} (try --help)",
            extra.to_string_lossy(),
            first.to_string_lossy()
        )),
    }
}

/// Carries out every action but [`Action::Run`]; `None` means: start the server.
pub fn dispatch(action: Action) -> Option<ExitCode> {
    match action {
        Action::Run => None,
        Action::Help => {
            print!("{}", help());
            Some(ExitCode::SUCCESS)
        }
        Action::Version => {
            println!("{NAME} {VERSION}");
            Some(ExitCode::SUCCESS)
        }
        Action::CheckConfig => Some(check_config()),
        Action::Error(message) => {
            eprintln!("{NAME}: {message}");
            Some(ExitCode::from(2))
        }
    }
}

/// The `--help` text: usage, then every variable of [`VARS`] with default and meaning.
pub fn help() -> String {
    let mut out = format!(
        "{NAME} {VERSION}: live-media relay over WebSockets\n\
         \n\
         Usage: {NAME} [--help | --version | --check-config]\n\
         \n\
         Without arguments the server starts. It is configured by environment\n\
         variables; a .env file in the working directory is loaded first and the\n\
         real environment wins; a .env line that cannot be parsed stops the start.\n\
         Empty values count as unset.\n\
         \n\
         Options:\n\
         \x20 -h, --help          this text\n\
         \x20 -V, --version       name and version\n\
         \x20     --check-config  read .env and the environment as a start would, print\n\
         \x20                     the effective settings (secrets as {}) and exit 0,\n\
         \x20                     or print the errors and exit 2; binds no port\n\
         \n\
         Environment variables (name, default, meaning):\n",
        vars::MASK
    );
    let width = VARS.iter().map(|v| v.name.len()).max().unwrap_or(0);
    let dwidth = VARS
        .iter()
        .map(|v| v.default.shown().chars().count())
        .max()
        .unwrap_or(0);
    for v in VARS {
        let default = v.default.shown();
        let pad = dwidth.saturating_sub(default.chars().count());
        let _ = writeln!(
            out,
            "  {:width$}  {default}{:pad$}  {}",
            v.name,
            "",
            v.meaning.replace('`', "")
        );
    }
    out
}

/// `--check-config`: loads the configuration exactly as a start does (and the
/// TLS files when set), prints the effective settings or the errors.
fn check_config() -> ExitCode {
    let loaded = match Config::from_env() {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("configuration: {} error(s)", errors.count());
            return ExitCode::from(2);
        }
    };
    if let Some(settings) = &loaded.config.tls {
        if let Err(e) = crate::tls::Tls::new(settings) {
            eprintln!("{e}");
            eprintln!("configuration: 1 error(s)");
            return ExitCode::from(2);
        }
    }
    for warning in &loaded.warnings {
        println!("warning: {warning}");
    }
    let settings = vars::effective(&loaded.config);
    let width = settings.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, value) in settings {
        println!("{name:width$} = {value}");
    }
    println!("configuration: OK");
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn arguments() {
        assert_eq!(parse(args(&[])), Action::Run);
        assert_eq!(parse(args(&["--help"])), Action::Help);
        assert_eq!(parse(args(&["-h"])), Action::Help);
        assert_eq!(parse(args(&["--version"])), Action::Version);
        assert_eq!(parse(args(&["--check-config"])), Action::CheckConfig);
        for bad in [&["--nope"][..], &["serve"], &["--help", "x"], &[""], &["-"]] {
            assert!(
                matches!(parse(args(bad)), Action::Error(ref m) if !m.contains('\n')),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn help_lists_every_variable_on_one_line() {
        let text = help();
        for v in VARS {
            let line = text
                .lines()
                .find(|l| l.split_whitespace().next() == Some(v.name))
                .unwrap_or_else(|| panic!("{} missing from --help", v.name));
            assert!(line.contains(v.default.shown()), "{line}");
        }
    }
}
