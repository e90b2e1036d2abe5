//! The `.env` file, line by line, so that an error can name its line.
//!
//! dotenvy parses each logical line (a quoted value may span several
//! physical lines); we feed it one at a time. Its own iterator reports a bad
//! line's text but not its number, its loader stops at the first bad line and
//! the caller only sees a warning, and `std::env::set_var` panics on a NUL
//! byte; here every problem is an error naming the line it starts on.

use super::DotenvError;

/// Parses `bytes` (the contents of `file`) and hands each `NAME=value` to
/// `apply` in order, so that `${NAME}` in a later line sees an earlier one as
/// dotenvy's loader does. Stops at the first line that cannot be parsed.
pub(super) fn load(
    file: &str,
    bytes: &[u8],
    mut apply: impl FnMut(String, String),
) -> Result<(), DotenvError> {
    let err = |line: usize, what: String| DotenvError {
        file: file.to_owned(),
        line,
        what,
    };
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    // The logical line read so far and the number of its first physical line.
    let mut pending = String::new();
    let mut start = 1;
    for (index, raw) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
        let number = index + 1;
        let text =
            std::str::from_utf8(raw).map_err(|_| err(number, "is not valid UTF-8".to_owned()))?;
        if text.contains('\0') {
            return Err(err(number, "contains a NUL byte".to_owned()));
        }
        if pending.is_empty() {
            start = number;
        }
        pending.push_str(text);
        // Always end with a newline: then an error at the very end of the
        // text is dotenvy's "quote still open", never a bad last line.
        if !pending.ends_with('\n') {
            pending.push('\n');
        }
        let parsed: Result<Vec<(String, String)>, dotenvy::Error> =
            dotenvy::from_read_iter(pending.as_bytes()).collect();
        match parsed {
            Ok(items) => {
                for (name, value) in items {
                    apply(name, value);
                }
                pending.clear();
            }
            Err(dotenvy::Error::LineParse(text, at)) if at == text.len() && text == pending => {}
            Err(_) => {
                // Only what stands before `=`: the value may be a secret.
                let first = pending.lines().next().unwrap_or("");
                let name: String = first
                    .split('=')
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(64)
                    .collect();
                return Err(err(
                    start,
                    format!(
                        "cannot parse the setting {:?} (expected NAME=value, NAME of letters, digits, _ and .)",
                        name.trim()
                    ),
                ));
            }
        }
    }
    if pending.is_empty() {
        Ok(())
    } else {
        Err(err(
            start,
            "a quoted value has no closing quote before the end of the file".to_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: impl AsRef<[u8]>) -> Result<Vec<(String, String)>, DotenvError> {
        let mut out = Vec::new();
        load(".env", text.as_ref(), |k, v| out.push((k, v)))?;
        Ok(out)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn good_files() {
        assert_eq!(parse(""), Ok(vec![]));
        assert_eq!(
            parse("\u{feff}# c\n\nA=1\r\nexport B='x y' # note\nC=\"two\nlines\"\nD=3"),
            Ok(pairs(&[
                ("A", "1"),
                ("B", "x y"),
                ("C", "two\nlines"),
                ("D", "3")
            ]))
        );
    }

    #[test]
    fn bad_lines_are_named() {
        let line = |text: &[u8]| parse(text).map_err(|e| (e.line, e.to_string()));
        for (text, at) in [
            (&b"A=1\nMY VAR=1\nB=2\n"[..], 2),
            (b"A=1\nB=x\0y\n", 2),
            (b"A=1\n\nB=\"open\nmore\n", 3),
            (b"A=1\nB=\\q", 2),
            (b"=1\n", 1),
            (b"A=1\nB=\xff\n", 2),
            (b"A=1\nB=\"x\"\nC=\"a\nb\" junk\nD=1\n", 3),
        ] {
            let got = parse(text).map_err(|e| e.line);
            assert_eq!(got, Err(at), "{:?}: {:?}", text.escape_ascii(), line(text));
            let message = line(text).unwrap_err().1;
            assert!(
                message.starts_with(&format!(".env line {at}: ")),
                "{message}"
            );
            assert!(!message.contains('\n'), "{message}");
        }
    }
}
