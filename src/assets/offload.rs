//! `--offload-outputs-over BYTES`: outputs larger than that (as JSON) are written into the
//! notebook file as a link to their asset instead of in full, still as standard nbformat
//! outputs JupyterLab shows: a stream keeps its head and tail around a line naming the asset;
//! a display/result bundle loses its largest entries (recorded in the output's
//! `metadata.jupyter_mcp.offloaded`) and its `text/plain` says where they went. The execution
//! record keeps the full outputs. Errors (tracebacks) are never offloaded.

use serde_json::{json, Map, Value};

use super::extract::{rich_payload, Payload};
use super::Assets;

/// The outputs of a cell of `notebook` as they should be written into its file: see
/// [`Assets::offload`]; unchanged when no asset store is installed. Blocking.
pub fn offload_for_file(notebook: &str, outputs: Vec<Value>) -> Vec<Value> {
    match super::current() {
        Some(a) if a.settings().offload_over.is_some() => a.offload(notebook, None, outputs),
        _ => outputs,
    }
}

/// Bytes of head and of tail a cut text keeps in the file.
const KEEP_EACH_SIDE: usize = 2048;

impl Assets {
    /// The outputs to write into the notebook file: unchanged when offloading is off or they
    /// are small; otherwise large outputs are replaced by links (see the module docs).
    /// Failures to store an asset leave that output as it is.
    pub fn offload(
        &self,
        notebook: &str,
        execution_id: Option<&str>,
        outputs: Vec<Value>,
    ) -> Vec<Value> {
        let Some(limit) = self.settings().offload_over else {
            return outputs;
        };
        outputs
            .into_iter()
            .map(|o| {
                if json_len(&o) <= limit {
                    return o;
                }
                match o.get("output_type").and_then(Value::as_str) {
                    Some("stream") => self.offload_stream(notebook, execution_id, o),
                    Some("display_data" | "execute_result") => {
                        self.offload_bundle(notebook, execution_id, o, limit)
                    }
                    _ => o,
                }
            })
            .collect()
    }

    fn offload_stream(&self, notebook: &str, execution_id: Option<&str>, mut o: Value) -> Value {
        let Some(text) = jmcp_outputs::full_text(&o) else {
            return o;
        };
        let payload = Payload::text(&text);
        let Some(link) = self.offload_one(notebook, execution_id, &payload) else {
            return o;
        };
        o["text"] = Value::String(cut_with_link(&text, &link));
        o
    }

    fn offload_bundle(
        &self,
        notebook: &str,
        execution_id: Option<&str>,
        mut o: Value,
        limit: usize,
    ) -> Value {
        let Some(data) = o.get("data").and_then(Value::as_object).cloned() else {
            return o;
        };
        let mut by_size: Vec<(String, usize)> = data
            .iter()
            .filter(|(k, _)| k.as_str() != "text/plain")
            .map(|(k, v)| (k.clone(), json_len(v)))
            .collect();
        by_size.sort_by_key(|e| std::cmp::Reverse(e.1));
        let mut data = data;
        let mut offloaded = Vec::new();
        let mut notes = Vec::new();
        for (mime, _) in by_size {
            if data_len(&data) <= limit {
                break;
            }
            let Some(payload) = data.get(&mime).and_then(|v| rich_payload(&mime, v)) else {
                continue;
            };
            let Some(link) = self.offload_one(notebook, execution_id, &payload) else {
                continue;
            };
            notes.push(format!(
                "[jupyter-mcp: {mime} ({}) moved to {} ; file {}]",
                jmcp_outputs::format_size(payload.bytes.len()),
                link.uri,
                link.path
            ));
            offloaded.push(json!({
                "mime_type": mime,
                "uri": link.uri,
                "path": link.path,
                "bytes": payload.bytes.len(),
            }));
            data.remove(&mime);
        }
        let mut plain = data
            .get("text/plain")
            .and_then(jmcp_outputs::multiline)
            .unwrap_or_default();
        if data_len(&data) > limit && plain.len() > 2 * KEEP_EACH_SIDE {
            let payload = Payload::text(&jmcp_outputs::strip_ansi(&plain));
            if let Some(link) = self.offload_one(notebook, execution_id, &payload) {
                plain = cut_with_link(&jmcp_outputs::strip_ansi(&plain), &link);
                offloaded.push(json!({
                    "mime_type": "text/plain",
                    "uri": link.uri,
                    "path": link.path,
                    "bytes": payload.bytes.len(),
                }));
            }
        }
        if offloaded.is_empty() {
            return o;
        }
        for n in notes {
            if !plain.is_empty() && !plain.ends_with('\n') {
                plain.push('\n');
            }
            plain.push_str(&n);
        }
        data.insert("text/plain".into(), Value::String(plain));
        o["data"] = Value::Object(data);
        let meta = o.as_object_mut().map(|m| {
            m.entry("metadata")
                .or_insert_with(|| Value::Object(Map::new()))
        });
        if let Some(Value::Object(meta)) = meta {
            meta.insert("jupyter_mcp".into(), json!({ "offloaded": offloaded }));
        }
        o
    }

    fn offload_one(
        &self,
        notebook: &str,
        execution_id: Option<&str>,
        payload: &Payload,
    ) -> Option<Link> {
        match self.put(notebook, execution_id, payload) {
            Ok(id) => Some(Link {
                uri: id.uri(),
                path: self.dir().join(id.rel_path()).display().to_string(),
            }),
            Err(e) => {
                tracing::warn!(notebook, "could not offload an output: {e}");
                None
            }
        }
    }
}

struct Link {
    uri: String,
    path: String,
}

/// Head and tail of `text` around a line naming where the whole text is.
fn cut_with_link(text: &str, link: &Link) -> String {
    let Some((head_end, tail_start)) = jmcp_outputs::cut_points(text, 2 * KEEP_EACH_SIDE) else {
        return text.to_owned();
    };
    let head = &text[..head_end];
    let next_offset = head.matches('\n').count();
    let mut out = String::with_capacity(2 * KEEP_EACH_SIDE + 300);
    out.push_str(head);
    if !head.is_empty() && !head.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!(
        "[jupyter-mcp: {} of {} bytes of this output are in {} (file {}); read_asset(asset=\"{}\", offset={next_offset})]\n",
        jmcp_outputs::group_digits(tail_start - head_end),
        jmcp_outputs::group_digits(text.len()),
        link.uri,
        link.path,
        link.uri,
    ));
    out.push_str(&text[tail_start..]);
    out
}

fn json_len(v: &Value) -> usize {
    serde_json::to_string(v).map_or(0, |s| s.len())
}

/// Approximate JSON size of a mime bundle.
fn data_len(data: &Map<String, Value>) -> usize {
    data.iter().map(|(k, v)| k.len() + 4 + json_len(v)).sum()
}
