//! nbclient's end-of-cell stream coalescing (`coalesce_streams=True`), from
//! the block at the end of `NotebookClient.async_execute_cell` in nbclient
//! 0.11 `client.py`:
//!
//! 1. every `stream` output is merged (text appended) into the FIRST stream
//!    output of the same `name`, wherever it is in the cell; other outputs keep
//!    their relative order;
//! 2. the `\b` pass is a no-op: nbclient's loop
//!    `old = text; while len(text) < len(old): ...` starts with equal lengths
//!    and never runs, so backspaces are kept verbatim;
//! 3. `_RGX_CARRIAGERETURN = r".*\r(?=[^\n])"` is removed from each merged
//!    stream ([`apply_carriage_returns`]);
//! 4. a `stderr` stream immediately followed by a `stdout` stream is swapped
//!    so stdout comes first (nbclient's in-place `pop`/`insert` during
//!    `enumerate`, replicated step by step).

use serde_json::Value;
use std::collections::HashMap;

/// Result of [`coalesce_streams`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Coalesced {
    /// The coalesced outputs, as nbclient leaves `cell.outputs`.
    pub outputs: Vec<Value>,
    /// `index_map[i]` is the index in `outputs` that input output `i` ended up
    /// in (a merged stream maps to the stream it was merged into).
    pub index_map: Vec<usize>,
}

/// Applies nbclient's coalescing (see the module docs) to one cell's outputs.
///
/// Input outputs are nbformat output dicts. Stream `text` given as an array of
/// strings (nbformat's on-disk multiline form) is joined first; a stream whose
/// `name` or `text` is neither is left alone as if it were not a stream.
pub fn coalesce_streams(outputs: Vec<Value>) -> Coalesced {
    let mut slots: Vec<Value> = Vec::with_capacity(outputs.len());
    let mut index_map = Vec::with_capacity(outputs.len());
    let mut streams: HashMap<String, usize> = HashMap::new();
    for mut output in outputs {
        let name = stream_name(&output).map(str::to_owned);
        let Some((name, text)) = name.and_then(|n| take_text(&mut output).map(|t| (n, t))) else {
            index_map.push(slots.len());
            slots.push(output);
            continue;
        };
        if let Some(&first) = streams.get(&name) {
            if let Some(Value::String(existing)) = slots[first].get_mut("text") {
                existing.push_str(&text);
            }
            index_map.push(first);
        } else {
            if let Some(obj) = output.as_object_mut() {
                obj.insert("text".to_owned(), Value::String(text));
            }
            streams.insert(name, slots.len());
            index_map.push(slots.len());
            slots.push(output);
        }
    }

    for &i in streams.values() {
        if let Some(Value::String(text)) = slots[i].get_mut("text") {
            if text.contains('\r') {
                *text = apply_carriage_returns(text);
            }
        }
    }

    // stderr/stdout reordering, simulating Python's list iterator over a list
    // mutated in place (pop(i + 1) then insert(i, ..) is a swap).
    let mut position: Vec<usize> = (0..slots.len()).collect(); // slot -> position
    let mut i = 0;
    while i < slots.len() {
        if is_stream_named(&slots[i], "stderr")
            && i + 1 < slots.len()
            && is_stream_named(&slots[i + 1], "stdout")
        {
            slots.swap(i, i + 1);
            for p in position.iter_mut() {
                if *p == i {
                    *p = i + 1;
                } else if *p == i + 1 {
                    *p = i;
                }
            }
        }
        i += 1;
    }
    for idx in index_map.iter_mut() {
        *idx = position[*idx];
    }
    Coalesced {
        outputs: slots,
        index_map,
    }
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

fn is_stream_named(output: &Value, name: &str) -> bool {
    stream_name(output) == Some(name)
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
    fn merges_into_first_stream_of_same_name() {
        check(
            vec![stream("stdout", "a\n"), display(1), stream("stdout", "b\n")],
            vec![stream("stdout", "a\nb\n"), display(1)],
            &[0, 1, 0],
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
    fn backspaces_are_kept_like_nbclient() {
        check(
            vec![stream("stdout", "ab\u{8}c\n")],
            vec![stream("stdout", "ab\u{8}c\n")],
            &[0],
        );
    }

    #[test]
    fn stderr_then_stdout_is_swapped() {
        check(
            vec![
                stream("stderr", "e"),
                stream("stdout", "o"),
                stream("stderr", "f"),
            ],
            vec![stream("stdout", "o"), stream("stderr", "ef")],
            &[1, 0, 1],
        );
        // Not adjacent after merging: no swap.
        check(
            vec![stream("stderr", "e"), display(1), stream("stdout", "o")],
            vec![stream("stderr", "e"), display(1), stream("stdout", "o")],
            &[0, 1, 2],
        );
        check(
            vec![
                display(1),
                stream("stderr", "e"),
                stream("stdout", "o"),
                display(2),
            ],
            vec![
                display(1),
                stream("stdout", "o"),
                stream("stderr", "e"),
                display(2),
            ],
            &[0, 2, 1, 3],
        );
    }

    #[test]
    fn carriage_returns_apply_after_merging() {
        check(
            vec![
                stream("stdout", "xx"),
                display(1),
                stream("stdout", "a\rb\n"),
            ],
            vec![stream("stdout", "b\n"), display(1)],
            &[0, 1, 0],
        );
    }
}
