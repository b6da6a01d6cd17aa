//! Client frames, checked before rmcp sees them (JSON-RPC 2.0 over newline-delimited stdio,
//! MCP "Transports: stdio").
//!
//! rmcp's stdio reader ends the session on a byte that is not UTF-8 and silently skips a
//! line it cannot parse, so a client that sent one waits forever. Here the input is read as
//! bytes, split on `\n` with a bounded buffer ([`MAX_FRAME_BYTES`]; longer lines are
//! discarded up to their newline without being held in memory), and each line is judged by
//! [`judge`]: a well-formed message goes on to rmcp unchanged; a malformed one is answered
//! here as JSON-RPC 2.0 §5.1 says (-32700 parse error with `id: null`, -32600 invalid
//! request, -32602 invalid params), or, being a notification, only logged.

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};

/// Longest line accepted, in bytes (16 MiB, without its `\n`).
pub(crate) const MAX_FRAME_BYTES: usize = 16 << 20;

pub(crate) const PARSE_ERROR: i64 = -32700;
pub(crate) const INVALID_REQUEST: i64 = -32600;
pub(crate) const INVALID_PARAMS: i64 = -32602;

/// One line of input.
#[derive(Debug, PartialEq)]
pub(crate) enum Frame {
    /// The bytes of a line, without its `\n` (and without a trailing `\r`).
    Line(Vec<u8>),
    /// A line longer than the limit was discarded; its length in bytes.
    TooLong(usize),
}

/// Reads `\n`-separated lines of at most `max` bytes from a byte stream.
pub(crate) struct LineReader<R> {
    inner: BufReader<R>,
    max: usize,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// A reader that keeps at most `max` bytes of one line in memory.
    pub(crate) fn new(input: R, max: usize) -> LineReader<R> {
        LineReader {
            inner: BufReader::with_capacity(64 << 10, input),
            max,
        }
    }

    /// The next line, or `None` at the end of input. A last line without `\n` still counts.
    pub(crate) async fn next(&mut self) -> std::io::Result<Option<Frame>> {
        let mut line = Vec::new();
        let mut dropped = 0usize;
        loop {
            let buf = self.inner.fill_buf().await?;
            if buf.is_empty() {
                return Ok(match (dropped, line.is_empty()) {
                    (0, true) => None,
                    (0, false) => Some(Frame::Line(trim_cr(line))),
                    (n, _) => Some(Frame::TooLong(n)),
                });
            }
            let newline = buf.iter().position(|b| *b == b'\n');
            let chunk = &buf[..newline.unwrap_or(buf.len())];
            if dropped == 0 && line.len() + chunk.len() <= self.max {
                line.extend_from_slice(chunk);
            } else {
                dropped += line.len() + chunk.len();
                line = Vec::new();
            }
            let used = newline.map_or(buf.len(), |i| i + 1);
            self.inner.consume(used);
            if newline.is_some() {
                return Ok(Some(if dropped > 0 {
                    Frame::TooLong(dropped)
                } else {
                    Frame::Line(trim_cr(line))
                }));
            }
        }
    }
}

fn trim_cr(mut line: Vec<u8>) -> Vec<u8> {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    line
}

/// What to do with one line.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Blank line: nothing.
    Skip,
    /// A well-formed message: pass the text on; the parsed value is for routing.
    Forward(String, Value),
    /// Malformed: send these error responses (one per answerable request).
    Reply(Vec<Value>),
    /// A malformed notification (no id): nothing to answer; log the reason.
    Drop(String),
}

/// A JSON-RPC error response.
pub(crate) fn error_response(id: Value, code: i64, message: impl Into<String>) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}})
}

/// Judges one frame (see the module docs).
pub(crate) fn judge(frame: Frame) -> Verdict {
    let bytes = match frame {
        Frame::TooLong(n) => {
            return Verdict::Reply(vec![error_response(
                Value::Null,
                PARSE_ERROR,
                format!(
                    "Parse error: a message of {n} bytes was discarded; messages are limited to \
                     {MAX_FRAME_BYTES} bytes per line (put large data in a file under the root)"
                ),
            )])
        }
        Frame::Line(bytes) => bytes,
    };
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            return Verdict::Reply(vec![error_response(
                Value::Null,
                PARSE_ERROR,
                format!(
                    "Parse error: the message is not valid UTF-8 (invalid byte at offset {}); \
                     send UTF-8 JSON, one message per line",
                    e.utf8_error().valid_up_to()
                ),
            )])
        }
    };
    if text.trim().is_empty() {
        return Verdict::Skip;
    }
    let value: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            // A lone surrogate escape is well-formed JSON text but no Unicode string: answer
            // the request it belongs to, if its id can be read once the escape is replaced.
            let id = serde_json::from_str::<Value>(&replace_lone_surrogates(&text))
                .ok()
                .as_ref()
                .and_then(answerable_id)
                .unwrap_or(Value::Null);
            return Verdict::Reply(vec![error_response(
                id,
                PARSE_ERROR,
                format!("Parse error: the message is not valid JSON ({e}); send one JSON-RPC message per line"),
            )]);
        }
    };
    match value {
        Value::Array(items) => batch(&items),
        Value::Object(_) => match check_message(&value) {
            Ok(()) => Verdict::Forward(text, value),
            Err(Problem { code, message }) => match answerable_id(&value) {
                Some(id) => Verdict::Reply(vec![error_response(id, code, message)]),
                None if value.get("id").is_none() && value.get("method").is_some() => {
                    Verdict::Drop(message)
                }
                None => Verdict::Reply(vec![error_response(Value::Null, code, message)]),
            },
        },
        _ => Verdict::Reply(vec![error_response(
            Value::Null,
            INVALID_REQUEST,
            "Invalid Request: a JSON-RPC message must be a JSON object",
        )]),
    }
}

/// `text` with every `\\uXXXX` escape of an unpaired UTF-16 surrogate replaced by `\\ufffd`.
fn replace_lone_surrogates(text: &str) -> String {
    fn unit(s: &str) -> Option<u16> {
        s.strip_prefix("\\u")
            .and_then(|h| h.get(..4))
            .and_then(|h| u16::from_str_radix(h, 16).ok())
    }
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(off) = text[i..].find('\\') {
        let at = i + off;
        out.push_str(&text[i..at]);
        let rest = &text[at..];
        match unit(rest) {
            Some(0xD800..=0xDBFF)
                if unit(&rest[6..]).is_some_and(|lo| (0xDC00..=0xDFFF).contains(&lo)) =>
            {
                out.push_str(&rest[..12]);
                i = at + 12;
            }
            Some(0xD800..=0xDFFF) => {
                out.push_str("\\ufffd");
                i = at + 6;
            }
            Some(_) => {
                out.push_str(&rest[..6]);
                i = at + 6;
            }
            None => {
                // Any other escape: copy the backslash and the escaped character.
                let len = rest[1..].chars().next().map_or(1, |c| 1 + c.len_utf8());
                out.push_str(&rest[..len]);
                i = at + len;
            }
        }
    }
    out.push_str(&text[i..]);
    out
}

/// MCP (since 2025-06-18) has no JSON-RPC batches: each request in one gets its own error.
fn batch(items: &[Value]) -> Verdict {
    const MSG: &str = "Invalid Request: JSON-RPC batches (arrays) are not supported by MCP; \
                       send each message on its own line";
    let replies: Vec<Value> = items
        .iter()
        .filter(|m| m.get("method").is_some())
        .filter_map(answerable_id)
        .map(|id| error_response(id, INVALID_REQUEST, MSG))
        .collect();
    if replies.is_empty() {
        Verdict::Reply(vec![error_response(Value::Null, INVALID_REQUEST, MSG)])
    } else {
        Verdict::Reply(replies)
    }
}

/// The message's id if it is one a client can match (a string or an integer).
fn answerable_id(msg: &Value) -> Option<Value> {
    let id = msg.get("id")?;
    valid_id(id).then(|| id.clone())
}

fn valid_id(id: &Value) -> bool {
    match id {
        Value::String(_) => true,
        Value::Number(n) => n.is_i64(),
        _ => false,
    }
}

struct Problem {
    code: i64,
    message: String,
}

fn invalid(message: impl Into<String>) -> Result<(), Problem> {
    Err(Problem {
        code: INVALID_REQUEST,
        message: format!("Invalid Request: {}", message.into()),
    })
}

/// Structural JSON-RPC 2.0 checks, then the params of the methods this server implements.
fn check_message(msg: &Value) -> Result<(), Problem> {
    if msg.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return invalid(format!(
            "\"jsonrpc\" must be \"2.0\" (got {})",
            describe(msg.get("jsonrpc"))
        ));
    }
    if let Some(id) = msg.get("id") {
        if !valid_id(id) {
            return invalid(format!(
                "\"id\" must be a string or an integer (got {})",
                describe(Some(id))
            ));
        }
    }
    let method = match msg.get("method") {
        Some(Value::String(m)) => m.as_str(),
        Some(other) => {
            return invalid(format!(
                "\"method\" must be a string (got {})",
                describe(Some(other))
            ))
        }
        None => {
            let is_response = msg.get("id").is_some()
                && (msg.get("result").is_some() || msg.get("error").is_some());
            return if is_response {
                Ok(())
            } else {
                invalid("\"method\" is missing (a request needs a method name)")
            };
        }
    };
    match msg.get("params") {
        None | Some(Value::Null) | Some(Value::Object(_)) => {}
        Some(Value::Array(_)) => {
            return Err(Problem {
                code: INVALID_PARAMS,
                message: format!(
                    "Invalid params for {method}: MCP takes named parameters, so \"params\" \
                     must be an object, not an array"
                ),
            })
        }
        Some(other) => {
            return invalid(format!(
                "\"params\" must be an object (got {})",
                describe(Some(other))
            ))
        }
    }
    if msg.get("id").is_some() {
        check_params(method, msg.get("params").filter(|p| !p.is_null()))
    } else {
        Ok(())
    }
}

/// Decodes the params of the requests this server implements with rmcp's own types, so a
/// request rmcp would not recognise is answered -32602 here instead of -32601 there.
fn check_params(method: &str, params: Option<&Value>) -> Result<(), Problem> {
    use rmcp::model::{
        CallToolRequestParams, InitializeRequestParams, PaginatedRequestParams,
        ReadResourceRequestParams,
    };
    fn decode<T: serde::de::DeserializeOwned>(p: Option<&Value>) -> Result<(), String> {
        serde_json::from_value::<T>(p.cloned().unwrap_or_else(|| json!({})))
            .map(drop)
            .map_err(|e| e.to_string())
    }
    if method == "tools/call" {
        let name = params.and_then(|p| p.get("name"));
        let arguments = params.and_then(|p| p.get("arguments"));
        let problem = if !name.is_some_and(Value::is_string) {
            Some(format!(
                "\"name\" must be a string naming a tool (see tools/list), got {}",
                describe(name)
            ))
        } else if !arguments.is_none_or(|a| a.is_object() || a.is_null()) {
            Some(format!(
                "\"arguments\" must be an object of named arguments, got {}",
                describe(arguments)
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(Problem {
                code: INVALID_PARAMS,
                message: format!("Invalid params for tools/call: {problem}"),
            });
        }
    }
    let result = match method {
        "initialize" => decode::<InitializeRequestParams>(params),
        "tools/call" => decode::<CallToolRequestParams>(params),
        "resources/read" => decode::<ReadResourceRequestParams>(params),
        "tools/list" | "resources/list" | "resources/templates/list" | "prompts/list" => {
            decode::<PaginatedRequestParams>(params)
        }
        _ => Ok(()),
    };
    result.map_err(|e| Problem {
        code: INVALID_PARAMS,
        message: format!("Invalid params for {method}: {e}"),
    })
}

/// A short description of a JSON value for messages: its type and, when short, itself.
pub(crate) fn describe(value: Option<&Value>) -> String {
    match value {
        None => "nothing".into(),
        Some(Value::Null) => "null".into(),
        Some(Value::Bool(b)) => format!("the boolean {b}"),
        Some(Value::Number(n)) => format!("the number {n}"),
        Some(Value::String(s)) if s.chars().count() <= 40 => format!("the string {s:?}"),
        Some(Value::String(_)) => "a string".into(),
        Some(Value::Array(_)) => "an array".into(),
        Some(Value::Object(_)) => "an object".into(),
    }
}

#[cfg(test)]
#[path = "frames/tests.rs"]
mod tests;
