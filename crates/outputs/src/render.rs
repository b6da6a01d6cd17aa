//! What an AI agent reads of one cell's nbformat outputs: per-output entries
//! for MCP `structuredContent`, a compact text, images, and the error.
//!
//! Text (stream text, `text/plain` of display_data/execute_result, error
//! tracebacks; all ANSI-stripped) is bounded per cell: the cell's text shares
//! `max_text_bytes` (default 8 KiB) fairly between its outputs — outputs
//! smaller than their fair share stay whole, the others are cut to head and
//! tail by [`bound_text`] with a marker line that counts against their share.
//! So the texts of a cell total at most `max_text_bytes` whenever every cut
//! output's share is at least [`MARKER_MAX_BYTES`] (at most
//! `n_cut * MARKER_MAX_BYTES` otherwise). Headers, asset lines and hints of
//! the compact text are not counted.
//!
//! [`render_with`] also hands every rich bundle entry, and the full text of
//! every cut output, to an [`AssetSink`] (the server's asset store); the links
//! it returns go into the entries (`asset`, `assets`), the compact text (one
//! line per asset, and a "read the rest" hint after a cut text) and, for
//! images, the image content shown (e.g. downscaled). This crate does no I/O.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::text::{bound_text, cut_points, strip_ansi, Truncated, MARKER_MAX_BYTES};

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
    /// Where the full content lives: the asset of the full text when `text`
    /// was cut, else the main rich asset (image, HTML, ...). `None` without an
    /// [`AssetSink`] (plain [`render`]).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub asset: Option<String>,
    /// Every asset of this output, one per stored mime type (and the full text).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub assets: Vec<AssetRef>,
    /// When `text` was cut: the line (0-based) of the full text where the
    /// omitted part starts, i.e. the `offset` to page on from.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub next_offset: Option<usize>,
    /// When `text` was cut: number of lines of the full text.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub total_lines: Option<usize>,
}

/// One stored asset of an output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetRef {
    /// Mime type of the stored content (`text/plain` for a cut text).
    pub mime_type: String,
    /// Resource URI.
    pub uri: String,
    /// Size of the stored content in bytes.
    pub bytes: usize,
}

/// What an [`AssetSink`] returns for content it stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AssetLink {
    /// Resource URI of the stored content.
    pub uri: String,
    /// Size of the stored content in bytes.
    pub bytes: usize,
    /// For `image/png` / `image/jpeg`: the image to show the agent instead of
    /// the bundle's (e.g. downscaled). `None` shows the bundle's image.
    pub preview: Option<ImageContent>,
    /// A few words about the content (e.g. `PNG 640x480, shown at 320x240`).
    pub detail: Option<String>,
}

/// Receives the content [`render_with`] wants stored; returns `None` to store
/// nothing (then the output is rendered as by [`render`]).
pub trait AssetSink {
    /// A bundle entry other than `text/plain` of output `index`
    /// (`value` as in the bundle: a string, a list of strings, or JSON).
    fn rich(&mut self, index: usize, mime: &str, value: &Value) -> Option<AssetLink>;
    /// The full text of output `index` (as rendered, ANSI-stripped), offered
    /// only when it was cut.
    fn text(&mut self, index: usize, text: &str) -> Option<AssetLink>;
}

/// The sink that stores nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAssets;

impl AssetSink for NoAssets {
    fn rich(&mut self, _: usize, _: &str, _: &Value) -> Option<AssetLink> {
        None
    }
    fn text(&mut self, _: usize, _: &str) -> Option<AssetLink> {
        None
    }
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
    /// `[display: image/png 12.3 KiB]` — then, with an [`AssetSink`], one line
    /// per stored asset (`  text/html (pandas DataFrame table (HTML), 3.2 KiB): URI`),
    /// then the output's bounded `text` (trailing newlines trimmed), if any,
    /// and after a cut text whose full text was stored, a hint line
    /// `[... N of T bytes omitted; read_asset(asset="URI", offset=K) for the rest (L lines in all)]`.
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
    render_with(outputs, opts, &mut NoAssets)
}

/// A rich bundle entry of one output, with its stored asset if any.
struct Rich {
    mime: String,
    size: usize,
    link: Option<AssetLink>,
    description: String,
}

/// [`render`], storing rich content and cut texts through `sink` (see the
/// module docs).
pub fn render_with(outputs: &[Value], opts: &RenderOptions, sink: &mut dyn AssetSink) -> Rendered {
    let mut entries = Vec::with_capacity(outputs.len());
    let mut full_texts = Vec::with_capacity(outputs.len());
    let mut headers = Vec::with_capacity(outputs.len());
    let mut riches: Vec<Vec<Rich>> = Vec::with_capacity(outputs.len());
    let mut images = Vec::new();
    let mut error = None;

    for (index, output) in outputs.iter().enumerate() {
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
            assets: Vec::new(),
            next_offset: None,
            total_lines: None,
        };
        let mut rich = Vec::new();
        let text = full_text(output);
        let header = match output_type.as_str() {
            "stream" => {
                let name = output
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("stream");
                entry.name = Some(name.to_owned());
                format!("[{name}]")
            }
            "display_data" | "execute_result" => {
                let label = if output_type == "execute_result" {
                    entry.execution_count = output.get("execution_count").and_then(Value::as_i64);
                    "result"
                } else {
                    "display"
                };
                let mut sizes = Vec::new();
                if let Some(data) = output.get("data").and_then(Value::as_object) {
                    for (mime, value) in data {
                        entry.mime_types.push(mime.clone());
                        if mime == "text/plain" {
                            continue;
                        }
                        let image = image_content(mime, value);
                        let size = image
                            .as_ref()
                            .map_or_else(|| value_size(value), |(_, n)| *n);
                        sizes.push(format!("{mime} {}", format_size(size)));
                        let link = sink.rich(index, mime, value);
                        if let Some(l) = &link {
                            entry.assets.push(AssetRef {
                                mime_type: mime.clone(),
                                uri: l.uri.clone(),
                                bytes: l.bytes,
                            });
                        }
                        let preview = link.as_ref().and_then(|l| l.preview.clone());
                        images.extend(preview.or(image.map(|(img, _)| img)));
                        rich.push(Rich {
                            description: describe(mime, value, link.as_ref()),
                            mime: mime.clone(),
                            size,
                            link,
                        });
                    }
                }
                entry.asset = primary_asset(&rich);
                if sizes.is_empty() {
                    format!("[{label}]")
                } else {
                    format!("[{label}: {}]", sizes.join(", "))
                }
            }
            "error" => {
                let field =
                    |k: &str| strip_ansi(output.get(k).and_then(Value::as_str).unwrap_or(""));
                let (ename, evalue) = (field("ename"), field("evalue"));
                if error.is_none() {
                    error = Some(ErrorInfo {
                        ename: ename.clone(),
                        evalue: evalue.clone(),
                        traceback: traceback_frames(output),
                    });
                }
                format!("[error] {ename}: {evalue}")
            }
            other => {
                if let Some(data) = output.get("data").and_then(Value::as_object) {
                    entry.mime_types = data.keys().cloned().collect();
                }
                format!("[{other}]")
            }
        };
        entries.push(entry);
        full_texts.push(text);
        headers.push(header);
        riches.push(rich);
    }

    let lens: Vec<usize> = full_texts
        .iter()
        .map(|t| t.as_ref().map_or(0, String::len))
        .collect();
    let shares = fair_shares(&lens, opts.max_text_bytes);
    let mut blocks = Vec::with_capacity(entries.len());
    for (index, ((((entry, full), header), share), rich)) in entries
        .iter_mut()
        .zip(full_texts)
        .zip(headers)
        .zip(shares)
        .zip(riches)
        .enumerate()
    {
        let mut block = header;
        for r in &rich {
            if let Some(link) = &r.link {
                block.push_str(&format!(
                    "\n  {} ({}, {}): {}",
                    r.mime,
                    r.description,
                    format_size(r.size),
                    link.uri
                ));
            }
        }
        if let Some(full) = full {
            // A cut text's marker line counts against its share.
            let bound = if full.len() > share {
                share.saturating_sub(MARKER_MAX_BYTES)
            } else {
                share
            };
            let (bounded, truncated) = bound_text(&full, bound);
            let trimmed = bounded.trim_end_matches('\n');
            if !trimmed.is_empty() {
                block.push('\n');
                block.push_str(trimmed);
            }
            if let Some(t) = truncated {
                let (head_end, _) = cut_points(&full, bound).unwrap_or((0, 0));
                let next_offset = full[..head_end].matches('\n').count();
                let total_lines = count_lines(&full);
                if let Some(link) = sink.text(index, &full) {
                    block.push_str(&format!(
                        "\n[... {} of {} bytes omitted; read_asset(asset=\"{}\", offset={next_offset}) for the rest ({} lines in all)]",
                        group_digits(t.total_bytes - t.shown_bytes),
                        group_digits(t.total_bytes),
                        link.uri,
                        group_digits(total_lines),
                    ));
                    entry.assets.push(AssetRef {
                        mime_type: "text/plain".into(),
                        uri: link.uri.clone(),
                        bytes: link.bytes,
                    });
                    entry.asset = Some(link.uri);
                    entry.next_offset = Some(next_offset);
                    entry.total_lines = Some(total_lines);
                }
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

/// The text an agent reads of one output, unbounded and ANSI-stripped:
/// stream text, `text/plain` of a mime bundle, or an error traceback with
/// frames joined by `"\n"`. `None` when the output has no such text.
pub fn full_text(output: &Value) -> Option<String> {
    match output.get("output_type").and_then(Value::as_str)? {
        "stream" => output
            .get("text")
            .and_then(multiline)
            .map(|t| strip_ansi(&t)),
        "display_data" | "execute_result" => output
            .get("data")
            .and_then(|d| d.get("text/plain"))
            .and_then(multiline)
            .map(|t| strip_ansi(&t)),
        "error" => {
            let frames = traceback_frames(output);
            (!frames.is_empty()).then(|| frames.join("\n"))
        }
        _ => None,
    }
}

/// Traceback frames of an error output, ANSI-stripped.
fn traceback_frames(output: &Value) -> Vec<String> {
    output
        .get("traceback")
        .and_then(Value::as_array)
        .map(|frames| {
            frames
                .iter()
                .filter_map(Value::as_str)
                .map(strip_ansi)
                .collect()
        })
        .unwrap_or_default()
}

/// Number of lines of `s` as read_asset pages it: pieces ending in `"\n"`,
/// plus a last unterminated piece.
pub fn count_lines(s: &str) -> usize {
    s.split_inclusive('\n').count()
}

/// The asset an output's `asset` names when its text was not cut: the first
/// stored image (PNG, JPEG, SVG), else PDF, else HTML, else the first stored.
fn primary_asset(rich: &[Rich]) -> Option<String> {
    const PREFERRED: [&str; 5] = [
        "image/png",
        "image/jpeg",
        "image/svg+xml",
        "application/pdf",
        "text/html",
    ];
    let linked = || rich.iter().filter(|r| r.link.is_some());
    PREFERRED
        .iter()
        .find_map(|m| linked().find(|r| r.mime == *m))
        .or_else(|| linked().next())
        .and_then(|r| r.link.as_ref().map(|l| l.uri.clone()))
}

/// One-line description of a bundle entry (what kind of thing it is).
pub fn describe(mime: &str, value: &Value, link: Option<&AssetLink>) -> String {
    let base = match mime {
        "image/png" => "PNG image".to_owned(),
        "image/jpeg" => "JPEG image".to_owned(),
        "image/gif" => "GIF image".to_owned(),
        "image/svg+xml" => "SVG image".to_owned(),
        "application/pdf" => "PDF document".to_owned(),
        "text/html" => describe_html(&multiline(value).unwrap_or_default()).to_owned(),
        "text/markdown" => "Markdown".to_owned(),
        "text/latex" => "LaTeX".to_owned(),
        "application/javascript" | "text/javascript" => "JavaScript".to_owned(),
        "application/vnd.plotly.v1+json" => "Plotly figure (JSON)".to_owned(),
        "application/vnd.bokehjs_exec.v0+json" | "application/vnd.bokehjs_load.v0+json" => {
            "Bokeh script (JSON)".to_owned()
        }
        "application/vnd.jupyter.widget-view+json" => {
            "Jupyter widget view (renders only in JupyterLab)".to_owned()
        }
        "application/vnd.vegalite.v4+json"
        | "application/vnd.vegalite.v5+json"
        | "application/vnd.vega.v5+json" => "Vega chart (JSON)".to_owned(),
        m if m == "application/json" || m.ends_with("+json") => "JSON".to_owned(),
        m => m.to_owned(),
    };
    match link.and_then(|l| l.detail.as_deref()) {
        Some(d) => format!("{base}, {d}"),
        None => base,
    }
}

/// What an HTML output most likely is (from markers the libraries emit).
fn describe_html(html: &str) -> &'static str {
    let head = &html[..floor_char(html, 200_000)];
    if head.contains("plotly") || head.contains("Plotly") {
        "Plotly figure (HTML)"
    } else if head.contains("bokeh") || head.contains("Bokeh") {
        "Bokeh plot (HTML)"
    } else if head.contains("<style type=\"text/css\">") && head.contains("#T_") {
        "pandas Styler table (HTML)"
    } else if head.contains("class=\"dataframe\"") {
        "pandas DataFrame table (HTML)"
    } else if head.contains("<table") {
        "HTML table"
    } else {
        "HTML"
    }
}

/// Largest char boundary of `s` at most `i`.
fn floor_char(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// `251888` -> `251,888`.
pub fn group_digits(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
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
pub fn multiline(v: &Value) -> Option<String> {
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
pub fn format_size(n: usize) -> String {
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
