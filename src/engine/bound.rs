//! Bounded outputs of one running execution (issue 8 item 9, `--max-execution-output-bytes`).
//!
//! The worker tells [`OutputBound`] the size of every message that changed the outputs. When
//! the outputs held pass the cap, the middle ones go to a spill file (see
//! `assets::spill`), and a marker output (a `display_data` whose `text/plain` says how many
//! outputs and bytes were moved and where) takes their place: the first outputs (up to a
//! quarter of the cap) and the last ones (up to another quarter) stay. A single stream output
//! that grows past a quarter of the cap (a loop of `print`s merges into one output) keeps the
//! head and tail of its text, with a line saying how much was moved. So memory, the execution
//! record and the notebook hold at most about the cap per execution, whatever the cell prints.
//! At the end the spill file becomes an asset and the marker names its URI.

use jmcp_outputs::OutputAccumulator;
use serde_json::{json, Value};

use crate::assets::spill::SpillFile;

/// Bytes an output has beyond its message content (`"output_type":"display_data"`, ...).
const OUTPUT_OVERHEAD: usize = 64;

/// How the line in a cut stream ends (to recognise it on the next cut).
const CUT_LINE_END: &str = " ...]\n";

/// Key in the marker's `metadata` (and in a cut stream's) that identifies it.
pub const MARKER_KEY: &str = "jupyter_mcp_spilled";

/// Spill state of one execution.
pub struct OutputBound {
    cap: usize,
    /// Approximate bytes of the outputs held (grows with each change, recomputed on spill).
    held: usize,
    /// Index of the marker output once something was spilled.
    marker: Option<usize>,
    spill: Option<SpillFile>,
    spilled_outputs: u64,
    spilled_bytes: u64,
    /// A cut stream (the last output): bytes of its head kept before the cut line.
    stream_head: Option<usize>,
    stream_cut_bytes: u64,
}

impl OutputBound {
    /// A bound of `cap` bytes; spill files go under `assets_dir` (none: spilled outputs are
    /// only counted).
    pub fn new(cap: usize, assets_dir: Option<&std::path::Path>) -> OutputBound {
        OutputBound {
            cap: cap.max(4096),
            held: 0,
            marker: None,
            spill: assets_dir.and_then(|d| SpillFile::create(d).ok()),
            spilled_outputs: 0,
            spilled_bytes: 0,
            stream_head: None,
            stream_cut_bytes: 0,
        }
    }

    /// Outputs and bytes moved out so far.
    pub fn spilled(&self) -> (u64, u64) {
        (
            self.spilled_outputs,
            self.spilled_bytes + self.stream_cut_bytes,
        )
    }

    /// Call after `acc` changed because of a message of `message_bytes`; spills when the
    /// outputs held pass the cap. Cost: O(outputs held) only when spilling, which happens
    /// at most once per half cap of new output.
    pub fn after_change(&mut self, acc: &mut OutputAccumulator, message_bytes: usize) {
        // An output is its message content plus `output_type` and the like.
        self.held += message_bytes + OUTPUT_OVERHEAD;
        if self.held <= self.cap {
            return;
        }
        self.cut_last_stream(acc);
        self.spill_middle(acc);
        self.held = acc.outputs().iter().map(json_len).sum();
    }

    /// Cuts the last output's text when it is a stream larger than a quarter of the cap.
    fn cut_last_stream(&mut self, acc: &mut OutputAccumulator) {
        let keep = self.cap / 8;
        let Some(last) = acc.last_output_mut() else {
            return;
        };
        if last.get("output_type").and_then(Value::as_str) != Some("stream") {
            self.stream_head = None;
            return;
        }
        let Some(text) = last.get("text").and_then(Value::as_str) else {
            return;
        };
        if text.len() <= self.cap / 4 {
            return;
        }
        // The head (and a previous cut line) stays; the middle goes; the tail stays.
        let head_end = match self.stream_head {
            Some(h) if text.get(..h).is_some_and(|p| p.ends_with(CUT_LINE_END)) => h,
            _ => floor_char(text, keep),
        };
        let tail_start = ceil_char(text, text.len() - keep).max(head_end);
        let moved = &text[head_end..tail_start];
        if let Some(s) = self.spill.as_mut() {
            let name = last.get("name").cloned().unwrap_or(json!("stdout"));
            let _ = s.append(&[json!({"output_type": "stream", "name": name, "text": moved})]);
        }
        self.stream_cut_bytes += moved.len() as u64;
        let head = &text[..floor_char(text, keep)];
        let line = format!(
            "\n[... {} bytes of this output not kept (--max-execution-output-bytes); see the spilled outputs asset{CUT_LINE_END}",
            jmcp_outputs::group_digits(self.stream_cut_bytes as usize)
        );
        let new_text = format!("{head}{line}{}", &text[tail_start..]);
        self.stream_head = Some(head.len() + line.len());
        last["text"] = Value::String(new_text);
    }

    /// Moves the outputs between the head and the tail to the spill file.
    fn spill_middle(&mut self, acc: &mut OutputAccumulator) {
        let sizes: Vec<usize> = acc.outputs().iter().map(json_len).collect();
        if let Some(m) = self.marker {
            if !is_marker(acc.outputs().get(m)) {
                self.marker = None; // cleared (clear_output): start again
            }
        }
        let quarter = self.cap / 4;
        let head_end = match self.marker {
            Some(m) => m,
            None => {
                let (mut sum, mut i) = (0, 0);
                while i < sizes.len() && sum + sizes[i] <= quarter {
                    sum += sizes[i];
                    i += 1;
                }
                i
            }
        };
        let from = if self.marker.is_some() {
            head_end + 1
        } else {
            head_end
        };
        // The last output always stays (a stream may still be growing).
        let Some(&last) = sizes.last() else { return };
        let (mut sum, mut tail_start) = (last, sizes.len() - 1);
        while tail_start > from && sum + sizes[tail_start - 1] <= quarter {
            sum += sizes[tail_start - 1];
            tail_start -= 1;
        }
        if tail_start <= from {
            return;
        }
        let moved_bytes: usize = sizes[from..tail_start].iter().sum();
        self.spilled_outputs += (tail_start - from) as u64;
        self.spilled_bytes += moved_bytes as u64;
        let marker = self.marker_output(None);
        let mut removed = acc.replace_range(head_end..tail_start, vec![marker]);
        if self.marker.is_some() && !removed.is_empty() {
            removed.remove(0); // the old marker
        }
        if let Some(s) = self.spill.as_mut() {
            let _ = s.append(&removed);
        }
        self.marker = Some(head_end);
    }

    fn marker_output(&self, uri: Option<&str>) -> Value {
        let where_ = match uri {
            Some(u) => format!("read_asset(asset=\"{u}\") has them, one JSON output per line"),
            None if self.spill.is_some() => {
                "they are kept as an asset, named here when the execution ends".into()
            }
            None => "they were dropped".into(),
        };
        json!({
            "output_type": "display_data",
            "data": {"text/plain": format!(
                "[... {} outputs ({} bytes) not kept here (--max-execution-output-bytes); {where_}]",
                jmcp_outputs::group_digits(self.spilled_outputs as usize),
                jmcp_outputs::group_digits(self.spilled_bytes as usize),
            )},
            "metadata": {MARKER_KEY: {"outputs": self.spilled_outputs, "bytes": self.spilled_bytes, "asset": uri}},
        })
    }

    /// At the end: stores the spill file as an asset (blocking) and names it in the marker
    /// (and a cut stream's line) of the finished `outputs`.
    pub fn finish(mut self, outputs: &mut [Value], notebook: &str, execution_id: &str) {
        let (n, bytes) = self.spilled();
        if n == 0 && bytes == 0 {
            return; // nothing spilled: the spill file is removed on drop
        }
        let uri = match (crate::assets::current(), self.spill.take()) {
            (Some(assets), Some(spill)) => assets
                .put_spill(notebook, execution_id, spill)
                .map_err(|e| tracing::warn!(execution = %execution_id, "could not store spilled outputs: {e}"))
                .ok()
                .map(|id| id.uri()),
            _ => None,
        };
        for o in outputs.iter_mut() {
            if is_marker(Some(o)) {
                *o = self.marker_output(uri.as_deref());
            }
        }
        if let Some(u) = uri {
            let from = "see the spilled outputs asset";
            let to = format!("read_asset(asset=\"{u}\")");
            for o in outputs.iter_mut() {
                if o.get("output_type").and_then(Value::as_str) == Some("stream") {
                    if let Some(t) = o.get("text").and_then(Value::as_str) {
                        if t.contains(from) {
                            o["text"] = Value::String(t.replace(from, &to));
                        }
                    }
                }
            }
        }
    }
}

fn is_marker(o: Option<&Value>) -> bool {
    o.and_then(|o| o.get("metadata"))
        .and_then(|m| m.get(MARKER_KEY))
        .is_some()
}

/// JSON size of a value (counted, not allocated).
pub fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

fn floor_char(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_outputs_keep_head_marker_and_tail() {
        let mut acc = OutputAccumulator::new();
        let mut b = OutputBound::new(64 * 1024, None);
        for i in 0..100_000 {
            let content = json!({"data": {"text/plain": format!("{i}")}, "metadata": {}});
            acc.apply("display_data", &content);
            b.after_change(&mut acc, json_len(&content));
        }
        let held: usize = acc.outputs().iter().map(json_len).sum();
        assert!(held <= 64 * 1024 + 1024, "{held} bytes held");
        let (n, _) = b.spilled();
        let kept = acc.outputs().len() as u64;
        assert_eq!(n + kept - 1, 100_000, "every output is kept or counted");
        let first = &acc.outputs()[0]["data"]["text/plain"];
        assert_eq!(first, "0");
        let last = &acc.outputs()[acc.outputs().len() - 1]["data"]["text/plain"];
        assert_eq!(last, "99999");
        let markers = acc.outputs().iter().filter(|o| is_marker(Some(o))).count();
        assert_eq!(markers, 1);
    }

    #[test]
    fn one_huge_stream_keeps_head_and_tail() {
        let mut acc = OutputAccumulator::new();
        let mut b = OutputBound::new(64 * 1024, None);
        for i in 0..200_000 {
            let content = json!({"name": "stdout", "text": format!("line {i}\n")});
            acc.apply("stream", &content);
            b.after_change(&mut acc, json_len(&content));
        }
        assert_eq!(acc.outputs().len(), 1);
        let text = acc.outputs()[0]["text"].as_str().unwrap();
        assert!(text.len() <= 64 * 1024, "{}", text.len());
        assert!(text.starts_with("line 0\n"));
        assert!(text.ends_with("line 199999\n"));
        assert_eq!(text.matches("not kept").count(), 1, "one cut line");
        assert!(b.spilled().1 > 1_000_000);
    }
}
