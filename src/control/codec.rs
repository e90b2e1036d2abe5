//! Text codec for the coordinator control protocol.
//!
//! A message is a method line, `Name: value` parameter lines, an empty line and an
//! optional verbatim body. The format is a compatibility contract with the Go coordinator.

/// Method names used by the coordinator protocol.
pub mod method {
    /// Keep-alive sent in both directions.
    pub const HEARTBEAT: &str = "HEARTBEAT";
    /// Reports a failure; carries `Error-Code` and `Error-Message`.
    pub const ERROR: &str = "ERROR";
    /// Asks the coordinator whether a publisher may start a stream.
    pub const PUBLISH_REQUEST: &str = "PUBLISH-REQUEST";
    /// Coordinator allows a publish request.
    pub const PUBLISH_ACCEPT: &str = "PUBLISH-ACCEPT";
    /// Coordinator refuses a publish request.
    pub const PUBLISH_DENY: &str = "PUBLISH-DENY";
    /// A published stream has ended.
    pub const PUBLISH_END: &str = "PUBLISH-END";
    /// Coordinator orders a stream to be terminated.
    pub const STREAM_KILL: &str = "STREAM-KILL";
}

/// Parameter names used by the coordinator protocol (matched case-insensitively).
pub mod param {
    /// Correlates a reply with its request.
    pub const REQUEST_ID: &str = "Request-ID";
    /// Channel the stream is published on.
    pub const STREAM_CHANNEL: &str = "Stream-Channel";
    /// Secret key presented by the publisher.
    pub const STREAM_KEY: &str = "Stream-Key";
    /// Identifier the coordinator assigns to a stream.
    pub const STREAM_ID: &str = "Stream-ID";
    /// IP address of the publishing user.
    pub const USER_IP: &str = "User-IP";
    /// Machine-readable error code.
    pub const ERROR_CODE: &str = "Error-Code";
    /// Human-readable error description.
    pub const ERROR_MESSAGE: &str = "Error-Message";
}

/// A control protocol message: upper-cased method, parameters (names matched
/// case-insensitively) in first-insertion order, and a body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlMessage {
    method: String,
    params: Vec<(String, String)>,
    body: String,
}

impl ControlMessage {
    /// Creates a message with no parameters and an empty body; the method is trimmed and upper-cased.
    /// The method must not contain line breaks for the message to serialise faithfully.
    pub fn new(method: &str) -> Self {
        Self {
            method: upper(method.trim()),
            ..Self::default()
        }
    }

    /// Builder form of [`ControlMessage::set_param`].
    #[must_use]
    pub fn with_param(mut self, name: &str, value: impl Into<String>) -> Self {
        self.set_param(name, value);
        self
    }

    /// Sets a parameter; the name is trimmed and matched case-insensitively, an existing value is replaced in place (keeping the first spelling of the name).
    /// Names must not contain `:` or line breaks, values no line breaks or surrounding whitespace,
    /// for the message to survive [`serialize`] and [`parse`] unchanged.
    pub fn set_param(&mut self, name: &str, value: impl Into<String>) {
        let name = name.trim();
        let key = lower(name);
        let value = value.into();
        match self.params.iter_mut().find(|(n, _)| lower(n) == key) {
            Some(slot) => slot.1 = value,
            None => self.params.push((name.to_owned(), value)),
        }
    }

    /// Builder that replaces the body; the body is kept verbatim.
    #[must_use]
    pub fn with_body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }

    /// The method, upper-cased (empty for an empty input).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// Value of the parameter `name`, looked up case-insensitively.
    pub fn param(&self, name: &str) -> Option<&str> {
        let key = lower(name.trim());
        self.params
            .iter()
            .find(|(n, _)| lower(n) == key)
            .map(|(_, v)| v.as_str())
    }

    /// All parameters as (name, value) pairs, in first-insertion order.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The body, verbatim (empty when absent).
    pub fn body(&self) -> &str {
        &self.body
    }
}

/// Parses a message; total: any input yields a message and never panics.
/// Malformed parameter lines are skipped; for repeated names the last value wins.
pub fn parse(text: &str) -> ControlMessage {
    let (first, mut rest) = split_line(text);
    let mut msg = ControlMessage::new(first);
    while !rest.is_empty() {
        let (line, next) = split_line(rest);
        rest = next;
        if line.is_empty() {
            msg.body = rest.to_owned();
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if !name.trim().is_empty() {
                msg.set_param(name, value.trim());
            }
        }
    }
    msg
}

/// Serialises a message: `METHOD\n`, one `name:value\n` per parameter in insertion order,
/// then `\n` and the body only when the body is not empty.
pub fn serialize(msg: &ControlMessage) -> String {
    let params_len: usize = msg.params.iter().map(|(n, v)| n.len() + v.len() + 2).sum();
    let mut out = String::with_capacity(msg.method.len() + params_len + msg.body.len() + 2);
    out.push_str(&msg.method);
    out.push('\n');
    for (name, value) in &msg.params {
        out.push_str(name);
        out.push(':');
        out.push_str(value);
        out.push('\n');
    }
    if !msg.body.is_empty() {
        out.push('\n');
        out.push_str(&msg.body);
    }
    out
}

/// Splits off the first line, dropping its `\n` or `\r\n` terminator (or a final `\r`).
fn split_line(text: &str) -> (&str, &str) {
    let (line, rest) = text.split_once('\n').unwrap_or((text, ""));
    (line.strip_suffix('\r').unwrap_or(line), rest)
}

fn upper(s: &str) -> String {
    s.chars().flat_map(char::to_uppercase).collect()
}

fn lower(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_full_message() {
        let msg = parse("PUBLISH-REQUEST\nRequest-ID: 7\nStream-Key: abc\n\nhello\nworld");
        assert_eq!(msg.method(), method::PUBLISH_REQUEST);
        assert_eq!(msg.param(param::REQUEST_ID), Some("7"));
        assert_eq!(msg.param("stream-key"), Some("abc"));
        assert_eq!(msg.param("STREAM-KEY"), Some("abc"));
        assert_eq!(msg.param(param::STREAM_ID), None);
        assert_eq!(msg.body(), "hello\nworld");
    }

    #[test]
    fn accepts_crlf_line_ends() {
        let msg = parse("ERROR\r\nError-Code: 403\r\nError-Message: denied\r\n\r\nbody\r\n");
        assert_eq!(msg.method(), method::ERROR);
        assert_eq!(msg.param(param::ERROR_CODE), Some("403"));
        assert_eq!(msg.param(param::ERROR_MESSAGE), Some("denied"));
        assert_eq!(msg.body(), "body\r\n");
    }

    #[test]
    fn method_is_trimmed_and_upper_cased() {
        assert_eq!(parse("  publish-end \n").method(), method::PUBLISH_END);
        assert_eq!(parse("\theartbeat").method(), method::HEARTBEAT);
    }

    #[test]
    fn skips_line_without_colon() {
        let msg = parse("HEARTBEAT\nno colon here\nA: 1\n");
        assert_eq!(msg.params().collect::<Vec<_>>(), vec![("A", "1")]);
    }

    #[test]
    fn skips_empty_name() {
        let msg = parse("HEARTBEAT\n: x\n   : y\nB: 2\n");
        assert_eq!(msg.params().collect::<Vec<_>>(), vec![("B", "2")]);
    }

    #[test]
    fn value_keeps_colons() {
        let msg = parse("HEARTBEAT\nName: a:b\nUser-IP:  ::1 \n");
        assert_eq!(msg.param("name"), Some("a:b"));
        assert_eq!(msg.param(param::USER_IP), Some("::1"));
    }

    #[test]
    fn repeated_name_last_wins() {
        let msg = parse("HEARTBEAT\nA: 1\nB: 2\na: 3\n");
        assert_eq!(msg.param("A"), Some("3"));
        assert_eq!(msg.params().count(), 2);
    }

    #[test]
    fn no_empty_line_means_no_body() {
        let msg = parse("STREAM-KILL\nStream-ID: 9\nnot a body");
        assert_eq!(msg.param(param::STREAM_ID), Some("9"));
        assert_eq!(msg.body(), "");
    }

    #[test]
    fn body_with_blank_lines_is_verbatim() {
        let body = "line1\n\n\r\nline4\n\n";
        let msg = parse(&format!("HEARTBEAT\nA: 1\n\n{body}"));
        assert_eq!(msg.body(), body);
    }

    #[test]
    fn empty_input_gives_empty_message() {
        assert_eq!(parse(""), ControlMessage::default());
        assert_eq!(parse("").method(), "");
    }

    #[test]
    fn serializes_publish_request_exactly() {
        let msg = ControlMessage::new(method::PUBLISH_REQUEST)
            .with_param(param::REQUEST_ID, "42")
            .with_param(param::STREAM_CHANNEL, "live")
            .with_param(param::STREAM_KEY, "s3cr3t")
            .with_param(param::USER_IP, "10.0.0.1");
        assert_eq!(
            serialize(&msg),
            "PUBLISH-REQUEST\nRequest-ID:42\nStream-Channel:live\nStream-Key:s3cr3t\nUser-IP:10.0.0.1\n"
        );
        let with_body = ControlMessage::new("error")
            .with_param(param::ERROR_CODE, "500")
            .with_body("oops");
        assert_eq!(serialize(&with_body), "ERROR\nError-Code:500\n\noops");
    }

    #[test]
    fn set_param_replaces_in_place() {
        let mut msg = ControlMessage::new(method::PUBLISH_ACCEPT)
            .with_param("A", "1")
            .with_param("B", "2");
        msg.set_param("a", "3");
        assert_eq!(serialize(&msg), "PUBLISH-ACCEPT\nA:3\nB:2\n");
    }

    fn messy_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("\n".to_owned()),
            Just("\r\n".to_owned()),
            Just("\r".to_owned()),
            Just(":".to_owned()),
            Just(" ".to_owned()),
            "[a-zA-Z-]{0,4}",
            any::<String>(),
        ];
        prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
    }

    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![any::<String>(), messy_text()]
    }

    fn name() -> impl Strategy<Value = String> {
        "[^:\\s]([^:\r\n]{0,10}[^:\\s])?".prop_filter("trimmed", |s| s.trim() == s)
    }

    fn value() -> impl Strategy<Value = String> {
        "([^\\s]([^\r\n]{0,10}[^\\s])?)?".prop_filter("trimmed", |s| s.trim() == s)
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in any_text()) {
            let _ = parse(&text);
        }

        #[test]
        fn serialize_then_parse_round_trips(
            method in "[A-Z0-9_-]{1,16}",
            params in prop::collection::vec((name(), value()), 0..6),
            body in any_text(),
        ) {
            let mut msg = ControlMessage::new(&method).with_body(body.clone());
            for (n, v) in &params {
                msg.set_param(n, v.clone());
            }
            let parsed = parse(&serialize(&msg));
            prop_assert_eq!(parsed.method(), method.as_str());
            prop_assert_eq!(parsed.body(), body.as_str());
            for (n, _) in &params {
                let last = params.iter().rev().find(|(m, _)| lower(m) == lower(n)).map(|(_, v)| v.as_str());
                prop_assert_eq!(parsed.param(n), last);
            }
            prop_assert_eq!(&parsed, &msg);
        }

        #[test]
        fn parse_serialize_parse_is_fixed_point(text in any_text()) {
            let once = parse(&text);
            let twice = parse(&serialize(&once));
            prop_assert_eq!(twice, once);
        }
    }
}
