//! Which bytes of an nbformat output become an asset, and the content hashes an output
//! references (what garbage collection looks for in notebooks and stored executions).
//!
//! The same functions compute both, so an asset made from an output always matches the hashes
//! found in that output later: base64 bundle entries (PNG, JPEG, GIF, PDF) are stored decoded,
//! other strings (SVG, HTML, Markdown, ...) as UTF-8, JSON entries pretty-printed, and texts
//! (stream text, `text/plain`, tracebacks) exactly as rendered for the agent (ANSI-stripped).

use std::collections::HashSet;

use base64::Engine as _;
use serde_json::Value;

use super::uri::{ext_for_mime, sha256_hex};

/// Content to store as an asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// Mime type of the content (as in the bundle; `text/plain` for texts).
    pub mime_type: String,
    /// File extension it is stored under.
    pub ext: &'static str,
    /// The bytes to store.
    pub bytes: Vec<u8>,
    /// SHA-256 of `bytes`, lowercase hex.
    pub sha256: String,
}

impl Payload {
    fn new(mime_type: &str, bytes: Vec<u8>) -> Payload {
        Payload {
            mime_type: mime_type.to_owned(),
            ext: ext_for_mime(mime_type),
            sha256: sha256_hex(&bytes),
            bytes,
        }
    }

    /// The full text of an output (see [`jmcp_outputs::full_text`]).
    pub fn text(text: &str) -> Payload {
        Payload::new("text/plain", text.as_bytes().to_vec())
    }

    /// True for content served as text (paged by lines by read_asset).
    pub fn is_text(&self) -> bool {
        is_text_mime(&self.mime_type)
    }
}

/// Mime types whose bundle value is base64 of binary content.
fn is_base64_mime(mime: &str) -> bool {
    mime == "application/pdf" || (mime.starts_with("image/") && mime != "image/svg+xml")
}

/// Mime types that carry no content worth storing (a widget view is only a model id).
fn is_skipped_mime(mime: &str) -> bool {
    mime == "text/plain" || mime.starts_with("application/vnd.jupyter.widget")
}

/// True for mime types served as text.
pub fn is_text_mime(mime: &str) -> bool {
    mime.starts_with("text/")
        || mime == "image/svg+xml"
        || mime == "application/json"
        || mime.ends_with("+json")
        || mime == "application/javascript"
}

/// The asset content of one bundle entry, or `None` for entries not stored (`text/plain`,
/// widget views, base64 that does not decode).
pub fn rich_payload(mime: &str, value: &Value) -> Option<Payload> {
    if is_skipped_mime(mime) {
        return None;
    }
    if is_base64_mime(mime) {
        let mut b64 = jmcp_outputs::multiline(value)?;
        b64.retain(|c| !c.is_ascii_whitespace());
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .ok()?;
        return Some(Payload::new(mime, bytes));
    }
    let bytes = match value {
        Value::String(_) | Value::Array(_) if !is_json_mime(mime) => {
            jmcp_outputs::multiline(value)?.into_bytes()
        }
        other => {
            let mut v = serde_json::to_vec_pretty(other).ok()?;
            v.push(b'\n');
            v
        }
    };
    Some(Payload::new(mime, bytes))
}

fn is_json_mime(mime: &str) -> bool {
    mime == "application/json" || mime.ends_with("+json")
}

/// Adds to `into` the SHA-256 of every payload `output` could have produced: each stored bundle
/// entry and its full text (whether or not it was long enough to be cut).
pub fn output_hashes(output: &Value, into: &mut HashSet<String>) {
    if let Some(data) = output.get("data").and_then(Value::as_object) {
        for (mime, value) in data {
            if let Some(p) = rich_payload(mime, value) {
                into.insert(p.sha256);
            }
        }
    }
    if let Some(text) = jmcp_outputs::full_text(output) {
        into.insert(sha256_hex(text.as_bytes()));
    }
}

/// Adds to `into` every run of exactly 64 lowercase hex digits in `raw`: the content hashes
/// of asset URIs written into a file (offloaded outputs) or a stored execution.
pub fn hex_refs(raw: &str, into: &mut HashSet<String>) {
    let bytes = raw.as_bytes();
    let mut start = None;
    for (i, b) in bytes.iter().enumerate() {
        let hex = matches!(b, b'0'..=b'9' | b'a'..=b'f');
        match (hex, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if i - s == 64 {
                    into.insert(raw[s..i].to_owned());
                }
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        if bytes.len() - s == 64 {
            into.insert(raw[s..].to_owned());
        }
    }
}

/// Content hashes referenced by a notebook file's text: the outputs of its cells (parsed) and
/// any asset URI in it. An unparsable file contributes its hex runs only.
pub fn notebook_hashes(raw: &str, into: &mut HashSet<String>) {
    hex_refs(raw, into);
    let Ok(nb) = serde_json::from_str::<Value>(raw) else {
        return;
    };
    let cells = nb.get("cells").and_then(Value::as_array);
    for cell in cells.into_iter().flatten() {
        let outputs = cell.get("outputs").and_then(Value::as_array);
        for output in outputs.into_iter().flatten() {
            output_hashes(output, into);
        }
    }
}

/// Content hashes referenced by a stored execution's outputs (a JSON array).
pub fn outputs_hashes(raw_outputs: &str, into: &mut HashSet<String>) {
    hex_refs(raw_outputs, into);
    if let Ok(Value::Array(outputs)) = serde_json::from_str::<Value>(raw_outputs) {
        for output in &outputs {
            output_hashes(output, into);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PNG: &str =
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=";

    #[test]
    fn payloads_per_mime() {
        let png = rich_payload("image/png", &json!([&PNG[..30], "\n", &PNG[30..]]));
        let png = png.expect("png decodes");
        assert_eq!(png.ext, "png");
        assert!(png.bytes.starts_with(b"\x89PNG"));
        assert!(!png.is_text());
        assert_eq!(png.sha256, sha256_hex(&png.bytes));

        let html = rich_payload("text/html", &json!(["<b>", "x</b>"])).expect("html");
        assert_eq!(
            (html.ext, html.bytes.as_slice()),
            ("html", &b"<b>x</b>"[..])
        );
        assert!(html.is_text());

        let plotly =
            rich_payload("application/vnd.plotly.v1+json", &json!({"data": [1]})).expect("json");
        assert_eq!(plotly.ext, "json");
        assert_eq!(
            String::from_utf8_lossy(&plotly.bytes),
            "{\n  \"data\": [\n    1\n  ]\n}\n"
        );
        // A JSON mime whose value is a string is still JSON (a JSON string).
        let s = rich_payload("application/json", &json!("x")).expect("json string");
        assert_eq!(s.bytes, b"\"x\"\n");

        assert_eq!(rich_payload("text/plain", &json!("x")), None);
        assert_eq!(
            rich_payload(
                "application/vnd.jupyter.widget-view+json",
                &json!({"model_id": "m"})
            ),
            None
        );
        assert_eq!(rich_payload("image/png", &json!("not base64!")), None);
        assert_eq!(
            rich_payload("application/pdf", &json!("JVBERi0=")).map(|p| p.bytes),
            Some(b"%PDF-".to_vec())
        );
    }

    #[test]
    fn hashes_of_outputs_match_payloads() {
        let long = "x\n".repeat(10);
        let outputs = json!([
            {"output_type": "stream", "name": "stdout", "text": ["\u{1b}[31m", long.clone()]},
            {"output_type": "display_data", "metadata": {},
             "data": {"image/png": PNG, "text/plain": "<Figure>"}},
        ]);
        let mut set = HashSet::new();
        outputs_hashes(&outputs.to_string(), &mut set);
        assert!(set.contains(&Payload::text(&long).sha256));
        assert!(set.contains(&Payload::text("<Figure>").sha256));
        let png = rich_payload("image/png", &json!(PNG)).expect("png");
        assert!(set.contains(&png.sha256));
        assert_eq!(set.len(), 3);

        let nb = json!({"cells": [{"cell_type": "code", "outputs": outputs}], "metadata": {}});
        let mut from_nb = HashSet::new();
        notebook_hashes(&nb.to_string(), &mut from_nb);
        assert_eq!(from_nb, set);
    }

    #[test]
    fn hex_runs_of_exactly_64() {
        let sha = "a".repeat(64);
        let mut set = HashSet::new();
        hex_refs(
            &format!(
                "jupyter-mcp://assets/0123456789abcdef/{sha}.png and {} {}",
                "b".repeat(65),
                "c".repeat(63)
            ),
            &mut set,
        );
        assert_eq!(set, HashSet::from([sha.clone()]));
        let mut set = HashSet::new();
        hex_refs(&sha, &mut set);
        assert_eq!(set.len(), 1);
        let mut set = HashSet::new();
        notebook_hashes("not json but has a link to {sha}", &mut set);
        notebook_hashes(&format!("not json {sha}"), &mut set);
        assert_eq!(set, HashSet::from([sha]));
    }
}
