//! One cell's outputs built from IOPub messages exactly as nbclient 0.11 does
//! (`NotebookClient.process_message`, `output`, `clear_output`,
//! `_update_display_id`, `clear_display_id_mapping`) with nbformat 5.11's
//! `output_from_msg` (nbclient's default `coalesce_streams=False`), followed
//! at [`OutputAccumulator::finish`] by JupyterLab's stream handling (see
//! [`crate::coalesce`]).
//!
//! Deliberate differences:
//! - consecutive `stream` messages of the same name are appended to the same
//!   output (nbclient keeps one output per message; JupyterLab merges them
//!   and applies `\b`/`\r`, SPEC §4); streams never merge across another
//!   output, so interleaved stdout/stderr keep their arrival order;
//! - malformed messages are ignored instead of raising (see [`output_from_msg`]);
//! - display-id indices are remapped through coalescing in [`Finished`]
//!   (nbclient keeps pre-coalescing indices, which later cells then apply to
//!   the wrong outputs or fail on);
//! - Output-widget capture (`comm_*` messages redirecting outputs into widget
//!   state) is not replicated: `comm_*` messages have no effect.

use crate::coalesce::coalesce_streams;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Effect of one message given to [`OutputAccumulator::apply`].
///
/// `apply` returns a `Vec<Applied>` whose first element is always exactly one
/// of [`Applied::Changed`] / [`Applied::Unchanged`] (this cell's outputs), and
/// which may have a second element [`Applied::ForeignDisplay`].
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// This cell's outputs changed (appended, merged, cleared or updated).
    Changed,
    /// This cell's outputs did not change (`status`, `execute_input`,
    /// `comm_*`, deferred `clear_output(wait=True)`, unknown or malformed
    /// messages, `update_display_data` for ids this cell does not show).
    Unchanged,
    /// An `update_display_data`, `display_data` or `execute_result` carrying a
    /// non-empty `transient.display_id`. Returned for every such message
    /// because the accumulator cannot know other cells: nbclient's
    /// `_update_display_id` replaces `data` and `metadata` of every output
    /// with that id in the whole notebook. This cell's own outputs are already
    /// updated; the caller applies it to the OTHER cells' outputs with
    /// [`apply_display_update`] (using their [`Finished::display_ids`]).
    /// `data` is the message's `data`, `metadata` its `metadata` (or `{}`).
    ForeignDisplay {
        /// `content.transient.display_id`.
        display_id: String,
        /// The new mime bundle.
        data: Value,
        /// The new output metadata.
        metadata: Value,
    },
}

/// A finished cell: what nbclient leaves in the cell after execution.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Finished {
    /// nbformat output dicts after nbclient's stream coalescing.
    pub outputs: Vec<Value>,
    /// The last `execution_count` seen in any message content (may be `None`,
    /// also when a message carried `"execution_count": null`).
    pub execution_count: Option<i64>,
    /// display_id -> indices into `outputs` (after coalescing); ids whose
    /// outputs were cleared are absent.
    pub display_ids: HashMap<String, Vec<usize>>,
}

/// Builds one cell's nbformat outputs from IOPub messages, as nbclient does.
///
/// Feed every IOPub message whose `parent_header.msg_id` is the execute
/// request, in arrival order, to [`apply`](Self::apply); call
/// [`finish`](Self::finish) after `status: idle`. Each execution starts with
/// empty outputs, no pending clear and no display ids, like nbclient.
#[derive(Debug, Clone, Default)]
pub struct OutputAccumulator {
    outputs: Vec<Value>,
    display_ids: HashMap<String, Vec<usize>>,
    clear_pending: bool,
    execution_count: Option<i64>,
    messages: u64,
}

impl OutputAccumulator {
    /// An empty accumulator (no outputs, no execution count).
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one IOPub message (`msg_type` = `header.msg_type`, `content` =
    /// the message content), following `NotebookClient.process_message`:
    /// 1. a non-empty `transient.display_id` on `update_display_data`,
    ///    `display_data` or `execute_result` replaces `data`/`metadata` of the
    ///    outputs of this cell with that id (and yields
    ///    [`Applied::ForeignDisplay`]);
    /// 2. any content with an `execution_count` key sets the execution count;
    /// 3. `clear_output`: `wait` truthy defers the clear to the next output,
    ///    otherwise clears now; clearing also empties this cell's display ids;
    /// 4. `stream`, `display_data`, `execute_result`, `error` are appended
    ///    (after a deferred clear), recording the display id's index;
    ///    `status`, `execute_input`, `update_display_data`, `comm_*` and
    ///    unknown types append nothing.
    ///
    /// See [`Applied`] for the shape of the result.
    pub fn apply(&mut self, msg_type: &str, content: &Value) -> Vec<Applied> {
        self.messages += 1;
        let mut changed = false;
        let mut foreign = None;
        let display_id = transient_display_id(content);

        if let Some(id) = display_id {
            if matches!(
                msg_type,
                "execute_result" | "display_data" | "update_display_data"
            ) {
                let as_type = if msg_type == "update_display_data" {
                    "display_data"
                } else {
                    msg_type
                };
                if let Some(out) = output_from_msg(as_type, content) {
                    let data = out.get("data").cloned().unwrap_or_default();
                    let metadata = out.get("metadata").cloned().unwrap_or_default();
                    if let Some(indices) = self.display_ids.get(id) {
                        changed |= !indices.is_empty();
                        apply_display_update(&mut self.outputs, indices, &data, &metadata);
                    }
                    foreign = Some(Applied::ForeignDisplay {
                        display_id: id.to_owned(),
                        data,
                        metadata,
                    });
                }
            }
        }

        if let Some(count) = content.get("execution_count") {
            self.execution_count = count.as_i64();
        }

        match msg_type {
            "status" | "execute_input" | "update_display_data" => {}
            "clear_output" => {
                if content.get("wait").is_some_and(truthy) {
                    self.clear_pending = true;
                } else {
                    changed |= !self.outputs.is_empty();
                    self.clear_now();
                }
            }
            t if t.starts_with("comm") => {}
            _ => changed |= self.output(msg_type, content, display_id),
        }

        let mut effects = vec![if changed {
            Applied::Changed
        } else {
            Applied::Unchanged
        }];
        effects.extend(foreign);
        effects
    }

    /// nbclient `output`: build the output, run a deferred clear, record the
    /// display id, append. Returns whether outputs changed.
    fn output(&mut self, msg_type: &str, content: &Value, display_id: Option<&str>) -> bool {
        let Some(out) = output_from_msg(msg_type, content) else {
            return false;
        };
        if self.clear_pending {
            self.clear_now();
            self.clear_pending = false;
        }
        if display_id.is_none() && self.try_merge_stream(&out) {
            return true;
        }
        if let Some(id) = display_id {
            self.display_ids
                .entry(id.to_owned())
                .or_default()
                .push(self.outputs.len());
        }
        self.outputs.push(out);
        true
    }

    /// Appends a stream's text to the last output if that is a stream of the
    /// same name (memory only; coalescing would merge them anyway).
    fn try_merge_stream(&mut self, out: &Value) -> bool {
        let (Some("stream"), Some(name), Some(text)) = (
            out.get("output_type").and_then(Value::as_str),
            out.get("name").and_then(Value::as_str),
            out.get("text").and_then(Value::as_str),
        ) else {
            return false;
        };
        let Some(last) = self.outputs.last_mut() else {
            return false;
        };
        if last.get("output_type").and_then(Value::as_str) != Some("stream")
            || last.get("name").and_then(Value::as_str) != Some(name)
        {
            return false;
        }
        match last.get_mut("text") {
            Some(Value::String(existing)) => {
                existing.push_str(text);
                true
            }
            _ => false,
        }
    }

    /// `outs[:] = []` plus nbclient `clear_display_id_mapping` for this cell.
    fn clear_now(&mut self) {
        self.outputs.clear();
        for indices in self.display_ids.values_mut() {
            indices.clear();
        }
    }

    /// The current execution count (see [`Finished::execution_count`]).
    pub fn execution_count(&self) -> Option<i64> {
        self.execution_count
    }

    /// Current outputs, before end-of-cell coalescing; consecutive streams of
    /// the same name are already merged into one output.
    pub fn outputs(&self) -> &[Value] {
        &self.outputs
    }

    /// display_id -> indices into [`outputs`](Self::outputs) (NOT into the
    /// coalesced outputs; [`Finished::display_ids`] has those). An id whose
    /// outputs were cleared maps to an empty list.
    pub fn display_ids(&self) -> &HashMap<String, Vec<usize>> {
        &self.display_ids
    }

    /// Replaces `outputs[range]` by `with` and returns the removed outputs, keeping display
    /// ids right (indices inside the range are dropped, later ones shift). For bounding
    /// memory: the caller keeps the removed outputs elsewhere (e.g. spilled to a file) and
    /// puts a marker in their place. A range past the end is clamped.
    pub fn replace_range(&mut self, range: std::ops::Range<usize>, with: Vec<Value>) -> Vec<Value> {
        let end = range.end.min(self.outputs.len());
        let start = range.start.min(end);
        let added = with.len();
        let removed: Vec<Value> = self.outputs.splice(start..end, with).collect();
        let n = removed.len();
        for indices in self.display_ids.values_mut() {
            indices.retain(|&i| i < start || i >= end);
            for i in indices.iter_mut() {
                if *i >= end {
                    *i = *i - n + added;
                }
            }
        }
        removed
    }

    /// The last output, to change in place (e.g. cut a huge stream text); indices stay valid.
    pub fn last_output_mut(&mut self) -> Option<&mut Value> {
        self.outputs.last_mut()
    }

    /// Whether a `clear_output(wait=True)` is waiting for the next output.
    /// nbclient drops a still-pending clear at the end of the cell.
    pub fn clear_pending(&self) -> bool {
        self.clear_pending
    }

    /// Number of messages given to [`apply`](Self::apply).
    pub fn len_messages(&self) -> u64 {
        self.messages
    }

    /// Ends the cell: stream processing ([`coalesce_streams`]), with display
    /// ids remapped to the coalesced indices (deduplicated, in order).
    pub fn finish(self) -> Finished {
        let coalesced = coalesce_streams(self.outputs);
        let mut display_ids = HashMap::new();
        for (id, indices) in self.display_ids {
            let mut mapped: Vec<usize> = Vec::with_capacity(indices.len());
            for i in indices {
                if let Some(&j) = coalesced.index_map.get(i) {
                    if !mapped.contains(&j) {
                        mapped.push(j);
                    }
                }
            }
            if !mapped.is_empty() {
                display_ids.insert(id, mapped);
            }
        }
        Finished {
            outputs: coalesced.outputs,
            execution_count: self.execution_count,
            display_ids,
        }
    }

    /// What [`finish`](Self::finish) would return for the outputs now,
    /// without consuming the accumulator (for progress / partial results).
    pub fn snapshot(&self) -> Vec<Value> {
        coalesce_streams(self.outputs.clone()).outputs
    }
}

/// nbclient `_update_display_id` for one cell: sets `data` and `metadata` of
/// `outputs[i]` for each `i` in `indices` (replacing the values in place, or
/// adding the keys at the end if absent). Indices out of range or pointing at
/// non-objects are skipped (nbclient would raise `IndexError`).
pub fn apply_display_update(
    outputs: &mut [Value],
    indices: &[usize],
    data: &Value,
    metadata: &Value,
) {
    for &i in indices {
        if let Some(Value::Object(out)) = outputs.get_mut(i) {
            out.insert("data".to_owned(), data.clone());
            out.insert("metadata".to_owned(), metadata.clone());
        }
    }
}

/// nbformat `v4.output_from_msg`: the output dict for an output message, with
/// nbformat's key order:
/// - `stream`: `{output_type, name, text}`
/// - `display_data`: `{output_type, metadata, data}`
/// - `execute_result`: `{output_type, metadata, data, execution_count}`
/// - `error`: `{output_type, ename, evalue, traceback}`
///
/// Other keys (`transient`, ...) are dropped. `None` for other message types
/// (nbformat raises `ValueError`, which nbclient logs and skips) and for
/// malformed content, where nbformat would raise and abort the run: `stream`
/// needs string `name` and string (or list-of-strings) `text`; `display_data`
/// and `execute_result` need an object `data`; `error` needs string `ename`
/// and `evalue`. Lenient defaults as in nbformat's `new_output`: missing or
/// non-object `metadata` -> `{}`, missing `execution_count` -> `null`, missing
/// `traceback` -> `[]` (non-string frames are dropped).
pub fn output_from_msg(msg_type: &str, content: &Value) -> Option<Value> {
    let mut out = Map::new();
    out.insert("output_type".to_owned(), Value::String(msg_type.to_owned()));
    match msg_type {
        "stream" => {
            let name = content.get("name")?.as_str()?;
            let text = match content.get("text")? {
                Value::String(s) => s.clone(),
                Value::Array(parts) if parts.iter().all(Value::is_string) => {
                    parts.iter().filter_map(Value::as_str).collect()
                }
                _ => return None,
            };
            out.insert("name".to_owned(), Value::String(name.to_owned()));
            out.insert("text".to_owned(), Value::String(text));
        }
        "display_data" | "execute_result" => {
            let data = content.get("data").filter(|d| d.is_object())?;
            let metadata = match content.get("metadata") {
                Some(m @ Value::Object(_)) => m.clone(),
                _ => Value::Object(Map::new()),
            };
            out.insert("metadata".to_owned(), metadata);
            out.insert("data".to_owned(), data.clone());
            if msg_type == "execute_result" {
                let count = content.get("execution_count").cloned().unwrap_or_default();
                out.insert("execution_count".to_owned(), count);
            }
        }
        "error" => {
            let ename = content.get("ename")?.as_str()?;
            let evalue = content.get("evalue")?.as_str()?;
            let traceback: Vec<Value> = content
                .get("traceback")
                .and_then(Value::as_array)
                .map(|frames| frames.iter().filter(|f| f.is_string()).cloned().collect())
                .unwrap_or_default();
            out.insert("ename".to_owned(), Value::String(ename.to_owned()));
            out.insert("evalue".to_owned(), Value::String(evalue.to_owned()));
            out.insert("traceback".to_owned(), Value::Array(traceback));
        }
        _ => return None,
    }
    Some(Value::Object(out))
}

/// nbclient: `transient = content.get("transient"); display_id =
/// transient.get("display_id") if transient else None`, then used only when
/// truthy: a non-empty string in a non-empty `transient` object.
fn transient_display_id(content: &Value) -> Option<&str> {
    content
        .get("transient")?
        .as_object()?
        .get("display_id")?
        .as_str()
        .filter(|id| !id.is_empty())
}

/// Python truthiness of a JSON value (`content.get("wait")`).
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

#[cfg(test)]
mod tests;
