//! What an AI agent reads of one cell's nbformat outputs: per-output entries
//! for MCP `structuredContent`, a compact text, images, and the error.
//!
//! Text (stream text, `text/plain` of display_data/execute_result, error
//! tracebacks; all ANSI-stripped) is bounded per cell: the cell's text shares
//! `max_text_bytes` (default 8 KiB) fairly between its outputs — outputs
//! smaller than their fair share stay whole, the others are cut to head and
//! tail by [`bound_text`] with a marker line. Headers and markers are not
//! counted, so the texts of a cell total at most
//! `max_text_bytes + n_cut * MARKER_MAX_BYTES` bytes.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::text::{bound_text, strip_ansi, Truncated, MARKER_MAX_BYTES};

/// Default per-cell text budget of [`RenderOptions`].
pub const DEFAULT_MAX_TEXT_BYTES: usize = 8192;

/// Options for [`render`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderOptions {
    /// Budget in bytes for all text of one cell (see the module docs).
    pub max_text_bytes: usize,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            max_text_bytes: DEFAULT_MAX_TEXT_BYTES,
        }
    }
}

/// One output as the agent sees it (an entry of MCP `structuredContent`), e.g.
/// `{"output_type":"stream","name":"stdout","text":"hi\n"}` or
/// `{"output_type":"display_data","mime_types":["image/png","text/plain"],"text":"<Figure ...>"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenderedOutput {
    /// nbformat `output_type` (`stream`, `display_data`, `execute_result`, `error`, ...).
    pub output_type: String,
    /// Stream name (`stdout`, `stderr`), streams only.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    /// Bounded, ANSI-stripped text: stream text, `text/plain` of a mime
    /// bundle, or an error traceback with frames joined by `"\n"`. `None`
    /// when the output has no such text (e.g. an image without text/plain).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub text: Option<String>,
    /// Keys of the `data` mime bundle, in bundle order.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub mime_types: Vec<String>,
    /// `execution_count` of an execute_result.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub execution_count: Option<i64>,
    /// Set when `text` was cut.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub truncated: Option<Truncated>,
    /// Asset reference; [`render`] leaves it `None` (filled by the asset store).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub asset: Option<String>,
}

/// An image for MCP image content: `image/png` or `image/jpeg` from a
/// display_data/execute_result bundle, base64 exactly as in the bundle with
/// whitespace removed (only if it decodes as standard base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageContent {
    /// `image/png` or `image/jpeg`.
    pub mime_type: String,
    /// Standard base64 (with padding as given), no whitespace.
    pub data_base64: String,
}

/// The first error output of the cell. `traceback` is the full traceback
/// (ANSI-stripped, one entry per nbformat frame, NOT bounded; the bounded
/// form is in the output's `text`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// Exception name, ANSI-stripped.
    pub ename: String,
    /// Exception value, ANSI-stripped.
    pub evalue: String,
    /// Traceback frames, ANSI-stripped.
    pub traceback: Vec<String>,
}

/// Result of [`render`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rendered {
    /// One entry per output, same order.
    pub outputs: Vec<RenderedOutput>,
    /// Compact text for the model: one block per output, joined by `"\n"`.
    /// A block is a header line — `[stdout]`, `[stderr]`, `[result]`,
    /// `[display]`, `[error] NAME: VALUE`, `[OUTPUT_TYPE]`; result/display
    /// headers list the non-text/plain mime types with sizes, e.g.
    /// `[display: image/png 12.3 KiB]` — followed by the output's bounded
    /// `text` (trailing newlines trimmed) on the next lines, if any.
    pub text: String,
    /// PNG/JPEG images of the cell, in output order.
    pub images: Vec<ImageContent>,
    /// The first error output, if any.
    pub error: Option<ErrorInfo>,
}

/// Renders one cell's nbformat outputs (as in a notebook file or from
/// [`crate::OutputAccumulator`]; multiline strings may be strings or lists of
/// strings) for an agent. See [`Rendered`] and the module docs for the budget.
pub fn render(outputs: &[Value], opts: &RenderOptions) -> Rendered {
    let mut entries = Vec::with_capacity(outputs.len());
    let mut full_texts = Vec::with_capacity(outputs.len());
    let mut headers = Vec::with_capacity(outputs.len());
    let mut images = Vec::new();
    let mut error = None;

    for output in outputs {
        let output_type = output
            .get("output_type")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned();
        let mut entry = RenderedOutput {
            output_type: output_type.clone(),
            name: None,
            text: None,
            mime_types: Vec::new(),
            execution_count: None,
            truncated: None,
            asset: None,
        };
        let (header, text) = match output_type.as_str() {
            "stream" => {
                let name = output
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("stream");
                entry.name = Some(name.to_owned());
                let text = output
                    .get("text")
                    .and_then(multiline)
                    .map(|t| strip_ansi(&t));
                (format!("[{name}]"), text)
            }
            "display_data" | "execute_result" => {
                let label = if output_type == "execute_result" {
                    entry.execution_count = output.get("execution_count").and_then(Value::as_i64);
                    "result"
                } else {
                    "display"
                };
                let mut rich = Vec::new();
                let mut text = None;
                if let Some(data) = output.get("data").and_then(Value::as_object) {
                    for (mime, value) in data {
                        entry.mime_types.push(mime.clone());
                        if mime == "text/plain" {
                            text = multiline(value).map(|t| strip_ansi(&t));
                            continue;
                        }
                        let image = image_content(mime, value);
                        let size = image
                            .as_ref()
                            .map_or_else(|| value_size(value), |(_, n)| *n);
                        rich.push(format!("{mime} {}", format_size(size)));
                        images.extend(image.map(|(img, _)| img));
                    }
                }
                let header = if rich.is_empty() {
                    format!("[{label}]")
                } else {
                    format!("[{label}: {}]", rich.join(", "))
                };
                (header, text)
            }
            "error" => {
                let field =
                    |k: &str| strip_ansi(output.get(k).and_then(Value::as_str).unwrap_or(""));
                let (ename, evalue) = (field("ename"), field("evalue"));
                let traceback: Vec<String> = output
                    .get("traceback")
                    .and_then(Value::as_array)
                    .map(|frames| {
                        frames
                            .iter()
                            .filter_map(Value::as_str)
                            .map(strip_ansi)
                            .collect()
                    })
                    .unwrap_or_default();
                let text = (!traceback.is_empty()).then(|| traceback.join("\n"));
                let header = format!("[error] {ename}: {evalue}");
                if error.is_none() {
                    error = Some(ErrorInfo {
                        ename,
                        evalue,
                        traceback,
                    });
                }
                (header, text)
            }
            other => {
                if let Some(data) = output.get("data").and_then(Value::as_object) {
                    entry.mime_types = data.keys().cloned().collect();
                }
                (format!("[{other}]"), None)
            }
        };
        entries.push(entry);
        full_texts.push(text);
        headers.push(header);
    }

    let lens: Vec<usize> = full_texts
        .iter()
        .map(|t| t.as_ref().map_or(0, String::len))
        .collect();
    let shares = fair_shares(&lens, opts.max_text_bytes);
    let mut blocks = Vec::with_capacity(entries.len());
    for (((entry, full), header), share) in
        entries.iter_mut().zip(full_texts).zip(headers).zip(shares)
    {
        let mut block = header;
        if let Some(full) = full {
            let (bounded, truncated) = bound_text(&full, share);
            let trimmed = bounded.trim_end_matches('\n');
            if !trimmed.is_empty() {
                block.push('\n');
                block.push_str(trimmed);
            }
            entry.text = Some(bounded);
            entry.truncated = truncated;
        }
        blocks.push(block);
    }

    Rendered {
        outputs: entries,
        text: blocks.join("\n"),
        images,
        error,
    }
}

/// Max-min fair split of `budget` over texts of lengths `lens`: everything
/// fits -> each keeps its length; otherwise, smallest first, a text smaller
/// than `remaining / texts_left` keeps its length and the rest share equally.
/// The result sums to at most `budget` (or to `lens`' sum when that fits).
fn fair_shares(lens: &[usize], budget: usize) -> Vec<usize> {
    if lens.iter().sum::<usize>() <= budget {
        return lens.to_vec();
    }
    let mut order: Vec<usize> = (0..lens.len()).collect();
    order.sort_by_key(|&i| lens[i]);
    let mut shares = vec![0; lens.len()];
    let mut remaining = budget;
    for (k, &i) in order.iter().enumerate() {
        let share = lens[i].min(remaining / (order.len() - k));
        shares[i] = share;
        remaining -= share;
    }
    shares
}

/// An nbformat multiline string: a string, or a list of strings concatenated.
fn multiline(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(parts.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

/// A PNG/JPEG bundle entry as image content with its decoded size, when it
/// is valid base64.
fn image_content(mime: &str, value: &Value) -> Option<(ImageContent, usize)> {
    if mime != "image/png" && mime != "image/jpeg" {
        return None;
    }
    let mut b64 = multiline(value)?;
    b64.retain(|c| !c.is_ascii_whitespace());
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&b64)
        .ok()?;
    Some((
        ImageContent {
            mime_type: mime.to_owned(),
            data_base64: b64,
        },
        decoded.len(),
    ))
}

/// Size in bytes of a bundle value: string length, or its JSON length.
fn value_size(v: &Value) -> usize {
    match multiline(v) {
        Some(s) => s.len(),
        None => serde_json::to_string(v).map_or(0, |s| s.len()),
    }
}

/// `512 B`, `3.2 KiB`, `1.5 MiB`.
fn format_size(n: usize) -> String {
    const KIB: f64 = 1024.0;
    let f = n as f64;
    if n < 1024 {
        format!("{n} B")
    } else if f < KIB * KIB {
        format!("{:.1} KiB", f / KIB)
    } else {
        format!("{:.1} MiB", f / (KIB * KIB))
    }
}

#[cfg(test)]
mod tests;
