//! End-of-cell stream processing, as JupyterLab keeps stream outputs (SPEC §4):
//!
//! 1. CONSECUTIVE `stream` outputs of the same `name` are merged (text
//!    appended) into one output; a stream never merges across another output,
//!    so stdout and stderr that interleave stay interleaved in arrival order.
//!    (nbclient's optional `coalesce_streams=True` merges every stream into the
//!    first of its name and moves stdout before stderr; that loses the order
//!    and is deliberately not copied. With its default, nbclient keeps one
//!    output per message; merging consecutive ones is what JupyterLab shows
//!    and saves.)
//! 2. backspaces are applied to each merged stream ([`apply_backspaces`]:
//!    a character other than `\n` followed by `\b` is removed, repeatedly);
//! 3. `.*\r(?=[^\n])` (nbclient's `_RGX_CARRIAGERETURN`) is removed from each
//!    merged stream ([`apply_carriage_returns`]).

use serde_json::Value;

/// Result of [`coalesce_streams`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Coalesced {
    /// The outputs with consecutive streams merged and stream text processed.
    pub outputs: Vec<Value>,
    /// `index_map[i]` is the index in `outputs` that input output `i` ended up
    /// in (a merged stream maps to the stream it was merged into).
    pub index_map: Vec<usize>,
}

/// Applies the end-of-cell stream processing (see the module docs) to one
/// cell's outputs.
///
/// Input outputs are nbformat output dicts. Stream `text` given as an array of
/// strings (nbformat's on-disk multiline form) is joined first; a stream whose
/// `name` or `text` is neither is left alone as if it were not a stream.
/// Non-stream outputs are untouched and keep their positions relative to the
/// streams.
pub fn coalesce_streams(outputs: Vec<Value>) -> Coalesced {
    let mut slots: Vec<Value> = Vec::with_capacity(outputs.len());
    let mut index_map = Vec::with_capacity(outputs.len());
    // Name of the stream in the last slot, if the last slot is a stream.
    let mut last_stream: Option<String> = None;
    for mut output in outputs {
        let name = stream_name(&output).map(str::to_owned);
        let Some((name, text)) = name.and_then(|n| take_text(&mut output).map(|t| (n, t))) else {
            index_map.push(slots.len());
            slots.push(output);
            last_stream = None;
            continue;
        };
        if last_stream.as_deref() == Some(name.as_str()) {
            let last = slots.len() - 1;
            if let Some(Value::String(existing)) = slots[last].get_mut("text") {
                existing.push_str(&text);
            }
            index_map.push(last);
        } else {
            if let Some(obj) = output.as_object_mut() {
                obj.insert("text".to_owned(), Value::String(text));
            }
            index_map.push(slots.len());
            slots.push(output);
            last_stream = Some(name);
        }
    }

    for slot in &mut slots {
        if stream_name(slot).is_none() {
            continue;
        }
        if let Some(Value::String(text)) = slot.get_mut("text") {
            if text.contains('\u{8}') {
                *text = apply_backspaces(text);
            }
            if text.contains('\r') {
                *text = apply_carriage_returns(text);
            }
        }
    }
    Coalesced {
        outputs: slots,
        index_map,
    }
}

/// Removes every character other than `\n` that is directly followed by a
/// backspace (`\u{8}`), until none is left: the fixed point of JupyterLab's
/// `txt.replace(/[^\n]\x08/gm, '')` loop. A backspace at the start of the
/// text or of a line stays. Example: `"ab\u{8}\u{8}c"` -> `"c"`.
pub fn apply_backspaces(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\u{8}' && out.chars().next_back().is_some_and(|last| last != '\n') {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out
}

/// Removes every match of nbclient's `_RGX_CARRIAGERETURN` (`.*\r(?=[^\n])`,
/// Python `re.sub`): in each line (split on `\n`), everything up to and
/// including the LAST `\r` that is followed by another character of the same
/// line. A `\r` directly before `\n` or at the very end of the text stays.
/// Example: `"10%\r20%\r100%\n"` -> `"100%\n"`, `"a\r\n"` -> `"a\r\n"`.
pub fn apply_carriage_returns(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.split('\n').enumerate() {
        if n > 0 {
            out.push('\n');
        }
        // `\r` is ASCII, so byte positions are char boundaries.
        let bytes = line.as_bytes();
        let cut = bytes
            .iter()
            .enumerate()
            .rev()
            .find(|&(p, &b)| b == b'\r' && p + 1 < bytes.len())
            .map_or(0, |(p, _)| p + 1);
        out.push_str(&line[cut..]);
    }
    out
}

fn stream_name(output: &Value) -> Option<&str> {
    if output.get("output_type").and_then(Value::as_str) != Some("stream") {
        return None;
    }
    output.get("name").and_then(Value::as_str)
}

/// Takes the stream text out as one string (joining a list of strings);
/// `None` (and the output untouched) when it is neither.
fn take_text(output: &mut Value) -> Option<String> {
    match output.get("text") {
        Some(Value::String(_)) => {}
        Some(Value::Array(parts)) if parts.iter().all(Value::is_string) => {}
        _ => return None,
    }
    match output
        .as_object_mut()?
        .insert("text".to_owned(), Value::Null)?
    {
        Value::String(s) => Some(s),
        Value::Array(parts) => Some(parts.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check_cr(input: &str, expected: &str) {
        assert_eq!(apply_carriage_returns(input), expected, "input {input:?}");
    }

    #[test]
    fn carriage_returns_like_nbclient_regex() {
        check_cr("10%\r20%\r100%\n", "100%\n");
        check_cr("a\r\n", "a\r\n");
        check_cr("a\r", "a\r");
        check_cr("a\r\rb", "b");
        check_cr("x\ry\nkeep\n1\r2\r\n", "y\nkeep\n2\r\n");
        check_cr("\r\r\n\rz", "\r\nz");
        check_cr("é\rü", "ü");
        check_cr("", "");
        check_cr("no carriage\nreturns", "no carriage\nreturns");
    }

    fn stream(name: &str, text: &str) -> Value {
        json!({"output_type": "stream", "name": name, "text": text})
    }

    fn display(n: i64) -> Value {
        json!({"output_type": "display_data", "metadata": {}, "data": {"text/plain": n.to_string()}})
    }

    fn check(input: Vec<Value>, expected: Vec<Value>, index_map: &[usize]) {
        let c = coalesce_streams(input);
        assert_eq!(c.outputs, expected);
        assert_eq!(c.index_map, index_map);
    }

    #[test]
    fn merges_only_consecutive_streams_of_same_name() {
        check(
            vec![stream("stdout", "a\n"), display(1), stream("stdout", "b\n")],
            vec![stream("stdout", "a\n"), display(1), stream("stdout", "b\n")],
            &[0, 1, 2],
        );
        check(
            vec![
                json!({"output_type": "stream", "name": "stdout", "text": ["a\n", "b"]}),
                stream("stdout", "c"),
            ],
            vec![stream("stdout", "a\nbc")],
            &[0, 0],
        );
    }

    #[test]
    fn interleaved_stdout_and_stderr_keep_arrival_order() {
        // Issue 8 item 14: nbclient's coalesce_streams=True gave
        // [stdout "Combo breaker!", stderr "Bar!Foo!"].
        check(
            vec![
                stream("stderr", "Bar!\n"),
                stream("stdout", "Combo breaker!\n"),
                stream("stderr", "Foo!\n"),
            ],
            vec![
                stream("stderr", "Bar!\n"),
                stream("stdout", "Combo breaker!\n"),
                stream("stderr", "Foo!\n"),
            ],
            &[0, 1, 2],
        );
        check(
            vec![
                stream("stderr", "e"),
                stream("stderr", "f"),
                stream("stdout", "o"),
            ],
            vec![stream("stderr", "ef"), stream("stdout", "o")],
            &[0, 0, 1],
        );
    }

    #[test]
    fn backspaces_are_applied() {
        check(
            vec![stream("stdout", "ab\u{8}c\n\u{8}x\u{8}\u{8}")],
            vec![stream("stdout", "ac\n")],
            &[0],
        );
        assert_eq!(apply_backspaces("ab\u{8}\u{8}c"), "c");
        assert_eq!(apply_backspaces("\u{8}\u{8}"), "");
        assert_eq!(apply_backspaces("a\n\u{8}"), "a\n\u{8}");
    }

    #[test]
    fn carriage_returns_apply_after_merging() {
        check(
            vec![
                stream("stdout", "xx"),
                stream("stdout", "a\rb\n"),
                display(1),
            ],
            vec![stream("stdout", "b\n"), display(1)],
            &[0, 0, 1],
        );
    }
}
