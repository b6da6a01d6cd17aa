//! Multi-line string handling as in Python nbformat's `nbformat/v4/rwbase.py`.
//!
//! On disk nbformat stores long text as a list of lines (`split_lines`, used when writing);
//! in memory it keeps one string (`rejoin_lines`, used when reading). The two are not exact
//! inverses and we copy both, quirks included, so our files are byte-identical to Python's:
//! - reading joins list-of-strings values of every non-JSON MIME type in `execute_result` /
//!   `display_data` data and in cell attachments, and list `text` of any other output type;
//! - writing splits only `text/*`, `application/javascript` and `image/svg+xml` values, and
//!   the `text` of `stream` outputs. `application/json` and `application/*+json` are never
//!   touched in either direction.

use serde_json::{Map, Value};

/// MIME types outside `text/*` that `split_lines` still splits.
const NON_TEXT_SPLIT_MIMES: [&str; 2] = ["application/javascript", "image/svg+xml"];

/// Python's `str.splitlines(True)`: split after each line boundary, keeping it. The
/// boundaries are `\n`, `\r`, `\r\n`, `\x0b`, `\x0c`, `\x1c`, `\x1d`, `\x1e`, `\x85`,
/// `\u2028` and `\u2029`. An empty string gives no lines.
pub(crate) fn split_keep_ends(s: &str) -> Vec<Value> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let end = match c {
            '\r' => match chars.peek() {
                Some((_, '\n')) => {
                    chars.next();
                    i + 2
                }
                _ => i + 1,
            },
            '\n' | '\u{b}' | '\u{c}' | '\u{1c}' | '\u{1d}' | '\u{1e}' | '\u{85}' | '\u{2028}'
            | '\u{2029}' => i + c.len_utf8(),
            _ => continue,
        };
        lines.push(Value::String(s[start..end].to_string()));
        start = end;
    }
    if start < s.len() {
        lines.push(Value::String(s[start..].to_string()));
    }
    lines
}

/// Joins a list of strings into one string; `None` if `value` is not a list of strings.
/// An empty list joins to `""` (Python's `all([])` is true).
pub(crate) fn join_strings(value: &Value) -> Option<String> {
    let Value::Array(items) = value else {
        return None;
    };
    let mut joined = String::new();
    for item in items {
        joined.push_str(item.as_str()?);
    }
    Some(joined)
}

/// `rwbase._is_json_mime`: `application/json` or `application/<anything>+json`.
fn is_json_mime(mime: &str) -> bool {
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// `rwbase._rejoin_mimebundle`, in place.
pub(crate) fn rejoin_mimebundle(data: &mut Map<String, Value>) {
    for (mime, value) in data.iter_mut() {
        if !is_json_mime(mime) {
            if let Some(joined) = join_strings(value) {
                *value = Value::String(joined);
            }
        }
    }
}

/// `rwbase._split_mimebundle`, in place.
pub(crate) fn split_mimebundle(data: &mut Map<String, Value>) {
    for (mime, value) in data.iter_mut() {
        if mime.starts_with("text/") || NON_TEXT_SPLIT_MIMES.contains(&mime.as_str()) {
            if let Value::String(s) = value {
                *value = Value::Array(split_keep_ends(s));
            }
        }
    }
}

/// The part of `rwbase.rejoin_lines` that concerns one output of a code cell, in place.
pub(crate) fn rejoin_output(output: &mut Map<String, Value>) {
    let output_type = output
        .get("output_type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if output_type == "execute_result" || output_type == "display_data" {
        if let Some(Value::Object(data)) = output.get_mut("data") {
            rejoin_mimebundle(data);
        }
    } else if !output_type.is_empty() {
        if let Some(text) = output.get_mut("text") {
            if let Some(joined) = join_strings(text) {
                *text = Value::String(joined);
            }
        }
    }
}

/// The part of `rwbase.split_lines` that concerns one output of a code cell, in place.
pub(crate) fn split_output(output: &mut Map<String, Value>) {
    match output.get("output_type").and_then(Value::as_str) {
        Some("execute_result" | "display_data") => {
            if let Some(Value::Object(data)) = output.get_mut("data") {
                split_mimebundle(data);
            }
        }
        Some("stream") => {
            if let Some(Value::String(text)) = output.get("text") {
                let lines = split_keep_ends(text);
                output.insert("text".to_string(), Value::Array(lines));
            }
        }
        _ => {}
    }
}

/// Applies `f` to every attachment bundle of a cell's `attachments` (a map of name to MIME
/// bundle), as both `rejoin_lines` and `split_lines` do. Non-object entries are left alone.
pub(crate) fn for_each_attachment(
    attachments: Option<&mut Value>,
    mut f: impl FnMut(&mut Map<String, Value>),
) {
    if let Some(Value::Object(attachments)) = attachments {
        for bundle in attachments.values_mut() {
            if let Value::Object(bundle) = bundle {
                f(bundle);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check_split(input: &str, expected: &[&str]) {
        assert_eq!(
            split_keep_ends(input),
            json!(expected).as_array().cloned().unwrap_or_default(),
            "{input:?}"
        );
    }

    #[test]
    fn split_matches_python_splitlines_keepends() {
        check_split("", &[]);
        check_split("abc", &["abc"]);
        check_split("abc\n", &["abc\n"]);
        check_split("a\n\nb", &["a\n", "\n", "b"]);
        check_split(
            "a\rb\r\nc\u{b}d\u{c}e\u{1c}f\u{85}g\u{2028}h\n",
            &[
                "a\r",
                "b\r\n",
                "c\u{b}",
                "d\u{c}",
                "e\u{1c}",
                "f\u{85}",
                "g\u{2028}",
                "h\n",
            ],
        );
    }

    fn check_bundle(input: Value, rejoined: Value, split: Value) {
        let Value::Object(mut data) = input else {
            panic!("bundle must be an object")
        };
        rejoin_mimebundle(&mut data);
        assert_eq!(Value::Object(data.clone()), rejoined);
        split_mimebundle(&mut data);
        assert_eq!(Value::Object(data), split);
    }

    #[test]
    fn mimebundles_follow_rwbase() {
        check_bundle(
            json!({"text/plain": ["a\n", "b"], "application/json": ["x", "y"],
                   "application/vnd.x+json": {"k": ["a\n"]}, "image/png": ["iVBO", "Rw0"],
                   "image/svg+xml": ["<svg>\n", "</svg>"], "text/html": []}),
            json!({"text/plain": "a\nb", "application/json": ["x", "y"],
                   "application/vnd.x+json": {"k": ["a\n"]}, "image/png": "iVBORw0",
                   "image/svg+xml": "<svg>\n</svg>", "text/html": ""}),
            json!({"text/plain": ["a\n", "b"], "application/json": ["x", "y"],
                   "application/vnd.x+json": {"k": ["a\n"]}, "image/png": "iVBORw0",
                   "image/svg+xml": ["<svg>\n", "</svg>"], "text/html": []}),
        );
    }

    fn check_output(input: Value, rejoined: Value, split: Value) {
        let Value::Object(mut output) = input else {
            panic!("output must be an object")
        };
        rejoin_output(&mut output);
        assert_eq!(Value::Object(output.clone()), rejoined);
        split_output(&mut output);
        assert_eq!(Value::Object(output), split);
    }

    #[test]
    fn outputs_follow_rwbase() {
        check_output(
            json!({"output_type": "stream", "name": "stdout", "text": ["1\n", "2\n"]}),
            json!({"output_type": "stream", "name": "stdout", "text": "1\n2\n"}),
            json!({"output_type": "stream", "name": "stdout", "text": ["1\n", "2\n"]}),
        );
        check_output(
            json!({"output_type": "error", "ename": "E", "evalue": "v", "traceback": ["a\n", "b"]}),
            json!({"output_type": "error", "ename": "E", "evalue": "v", "traceback": ["a\n", "b"]}),
            json!({"output_type": "error", "ename": "E", "evalue": "v", "traceback": ["a\n", "b"]}),
        );
        check_output(
            json!({"output_type": "display_data", "data": {"text/plain": ["x\n", "y"]}, "metadata": {}}),
            json!({"output_type": "display_data", "data": {"text/plain": "x\ny"}, "metadata": {}}),
            json!({"output_type": "display_data", "data": {"text/plain": ["x\n", "y"]}, "metadata": {}}),
        );
    }
}
