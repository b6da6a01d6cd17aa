//! Tool results: the `structuredContent` shapes (with JSON Schemas for `outputSchema`) and the
//! conversion from engine views. Only this layer knows these shapes (convert at the edge).
//!
//! Outputs are rendered for the agent (SPEC §4) with `jmcp_outputs::render_with` and the
//! installed asset store: text bounded per cell (head and tail, the total size, and a
//! `read_asset` hint to page through the rest), PNG/JPEG as image content (downscaled past the
//! configured size), other rich types as a one-line description and a URI; every asset also
//! comes back as an MCP resource link. Rendering stores assets and renews their leases, so it
//! does blocking I/O: it runs through `assets::blocking`.

use std::collections::HashSet;

use rmcp::model::{CallToolResult, ContentBlock as Content, Resource};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use super::budget::{self, Budget, Window};
use crate::engine::{CellView, ExecutionView, KernelView};
use crate::store::Status;
use jmcp_outputs::{render, render_with, RenderOptions, Rendered};

/// One output of a cell, bounded for an agent (SPEC §3 "Results").
#[derive(Debug, Serialize, JsonSchema)]
pub struct OutputEntry {
    /// nbformat output_type: stream, display_data, execute_result, error.
    pub output_type: String,
    /// stdout or stderr, for streams.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Text (stream text, text/plain, or the error traceback), bounded per cell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// MIME types present in the output bundle.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mime_types: Vec<String>,
    /// Prompt number of an execute_result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_count: Option<i64>,
    /// Present when `text` was cut: bytes shown and the full size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<TruncatedInfo>,
    /// Resource URI where the full content lives: the whole text when `text` was cut, else the
    /// main rich content (image, HTML, ...). Read it with read_asset or resources/read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    /// Every stored asset of this output (one per mime type, and the whole text when cut).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub assets: Vec<AssetEntry>,
}

/// One stored asset of an output.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AssetEntry {
    /// Mime type of the stored content (text/plain for a cut text).
    pub mime_type: String,
    /// Resource URI (jupyter-mcp://assets/...).
    pub uri: String,
    /// Size in bytes.
    pub bytes: usize,
}

/// How much of a text was shown.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TruncatedInfo {
    /// Bytes of the original text included.
    pub shown_bytes: usize,
    /// Size of the whole text in bytes.
    pub total_bytes: usize,
    /// Line of the whole text where the omitted part starts: read_asset(asset, offset=this).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<usize>,
    /// Lines in the whole text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_lines: Option<usize>,
}

/// The error of a failed execution.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorEntry {
    /// Exception class name, e.g. "NameError".
    pub ename: String,
    /// Exception message.
    pub evalue: String,
    /// Traceback lines, ANSI colours removed.
    pub traceback: Vec<String>,
}

/// An execution (from execute_cell, execute_code, get_execution, cancel_execution, and each
/// entry of run_all_cells).
#[derive(Debug, Serialize, JsonSchema)]
pub struct ExecutionResult {
    /// Id to poll with get_execution.
    pub execution_id: String,
    /// Notebook path relative to the root.
    pub notebook: String,
    /// The cell (absent for execute_code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cell_id: Option<String>,
    /// pending, running, completed, failed, cancelled, interrupted.
    pub status: Status,
    /// The kernel's prompt number for this execution.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_count: Option<i64>,
    /// Outputs (bounded).
    pub outputs: Vec<OutputEntry>,
    /// Set when the code raised or the kernel died.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorEntry>,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Milliseconds from start to finish.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// Something the agent should know (e.g. a fresh kernel was started after a crash).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_note: Option<String>,
    /// The prompt of an input() call waiting for send_input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_prompt: Option<String>,
    /// Present when not every output is in `outputs` (the result's byte budget,
    /// --max-result-bytes): which ones are, and where to page on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outputs_shown: Option<OutputsShown>,
}

/// Which outputs of an execution or cell a result shows.
#[derive(Debug, Serialize, JsonSchema)]
pub struct OutputsShown {
    /// Number of outputs in all.
    pub total_outputs: usize,
    /// Half-open ranges [from, to) of output indices shown, in order.
    pub ranges: Vec<[usize; 2]>,
    /// Pass this as output_offset to get_execution to see the next outputs not shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<usize>,
}

impl OutputsShown {
    fn of(w: &Window) -> Option<OutputsShown> {
        (!w.is_whole()).then(|| OutputsShown {
            total_outputs: w.total,
            ranges: w.ranges.iter().map(|r| [r.start, r.end]).collect(),
            next_offset: w.next_offset(),
        })
    }
}

/// Bounded rendering of one execution: structured result, compact text, and the extra content
/// blocks (images, then resource links to the assets).
pub struct RenderedExecution {
    pub result: ExecutionResult,
    pub text: String,
    pub images: Vec<Content>,
}

fn entries(r: &Rendered) -> Vec<OutputEntry> {
    r.outputs
        .iter()
        .map(|o| OutputEntry {
            output_type: o.output_type.clone(),
            name: o.name.clone(),
            text: o.text.clone(),
            mime_types: o.mime_types.clone(),
            execution_count: o.execution_count,
            truncated: o.truncated.as_ref().map(|t| TruncatedInfo {
                shown_bytes: t.shown_bytes,
                total_bytes: t.total_bytes,
                next_offset: o.next_offset,
                total_lines: o.total_lines,
            }),
            asset: o.asset.clone(),
            assets: o
                .assets
                .iter()
                .map(|a| AssetEntry {
                    mime_type: a.mime_type.clone(),
                    uri: a.uri.clone(),
                    bytes: a.bytes,
                })
                .collect(),
        })
        .collect()
}

fn images(r: &Rendered) -> Vec<Content> {
    r.images
        .iter()
        .map(|i| Content::image(i.data_base64.clone(), i.mime_type.clone()))
        .collect()
}

/// One resource link per distinct asset of the outputs, described by where it came from.
fn resource_links(r: &Rendered, origin: &str) -> Vec<Content> {
    let mut seen = HashSet::new();
    let mut links = Vec::new();
    for (i, o) in r.outputs.iter().enumerate() {
        for a in &o.assets {
            if !seen.insert(a.uri.clone()) {
                continue;
            }
            let name = a.uri.rsplit('/').next().unwrap_or(&a.uri).to_string();
            let what = if o.truncated.is_some() && a.mime_type == "text/plain" {
                "whole text"
            } else {
                a.mime_type.as_str()
            };
            links.push(Content::resource_link(
                Resource::new(a.uri.clone(), name)
                    .with_mime_type(a.mime_type.clone())
                    .with_size(a.bytes as u64)
                    .with_description(format!("{what} of output {i} of {origin}")),
            ));
        }
    }
    links
}

/// Renders outputs with the installed asset store (or without assets when none is).
fn render_all(
    outputs: &[Value],
    max_text_bytes: usize,
    notebook: &str,
    execution_id: Option<&str>,
) -> Rendered {
    let opts = RenderOptions { max_text_bytes };
    match crate::assets::current() {
        Some(assets) => crate::assets::blocking(|| {
            render_with(outputs, &opts, &mut assets.sink(notebook, execution_id))
        }),
        None => render(outputs, &opts),
    }
}

/// Renders the outputs of `window` (one rendering per range, sharing the text bound), with a
/// line between the ranges saying what was left out and how to page through it.
fn render_outputs(
    outputs: &[Value],
    window: &Window,
    max_text_bytes: usize,
    notebook: &str,
    execution_id: Option<&str>,
) -> Rendered {
    if window.is_whole() {
        return render_all(outputs, max_text_bytes, notebook, execution_id);
    }
    let share = (max_text_bytes / window.ranges.len().max(1)).max(budget::MIN_TEXT_BYTES / 2);
    let mut acc = render(&[], &RenderOptions::default());
    let mut texts = Vec::new();
    let mut next = 0;
    for r in &window.ranges {
        if r.start > next {
            texts.push(omitted_line(next..r.start, execution_id));
        }
        let part = render_all(&outputs[r.clone()], share, notebook, execution_id);
        if !part.text.is_empty() {
            texts.push(part.text);
        }
        acc.outputs.extend(part.outputs);
        acc.images.extend(part.images);
        acc.error = acc.error.or(part.error);
        next = r.end;
    }
    if next < window.total {
        texts.push(omitted_line(next..window.total, execution_id));
    }
    acc.text = texts.join("\n");
    acc
}

/// `[... outputs 48..99,952 (99,904 outputs) not shown; get_execution(execution_id="…", output_offset=48) pages through them]`
fn omitted_line(gap: std::ops::Range<usize>, execution_id: Option<&str>) -> String {
    let how = match execution_id {
        Some(id) => format!(
            "get_execution(execution_id=\"{id}\", output_offset={}) pages through them",
            gap.start
        ),
        None => "execute the cell again or read its outputs in a notebook viewer".to_string(),
    };
    format!(
        "[... outputs {}..{} ({} outputs) not shown (result budget, --max-result-bytes); {how}]",
        gap.start,
        gap.end,
        jmcp_outputs::group_digits(gap.len()),
    )
}

/// Traceback frames, ANSI-stripped; bounded like the output text when they exceed the bound
/// (the error output's entry and asset have the rest).
fn traceback(e: &Value, max_text_bytes: usize) -> Vec<String> {
    let frames: Vec<String> = e
        .get("traceback")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .filter_map(Value::as_str)
                .map(jmcp_outputs::strip_ansi)
                .collect()
        })
        .unwrap_or_default();
    let total: usize = frames.iter().map(|f| f.len() + 1).sum();
    if total <= max_text_bytes {
        return frames;
    }
    let (bounded, _) = jmcp_outputs::bound_text(
        &frames.join("\n"),
        max_text_bytes.saturating_sub(jmcp_outputs::MARKER_MAX_BYTES),
    );
    bounded.lines().map(str::to_owned).collect()
}

/// The outputs shown: a page from `output_offset`, else head and tail, plus (without an
/// offset) the marker of outputs moved out of memory (engine/bound.rs), which is always shown.
fn window_for(outputs: &[Value], budget: Budget, output_offset: Option<usize>) -> Window {
    let mut window = match output_offset {
        Some(o) => return Window::page(outputs.len(), o, budget.outputs),
        None => Window::head_tail(outputs.len(), budget.outputs),
    };
    let marker = outputs.iter().position(|o| {
        o.get("metadata")
            .and_then(|m| m.get("jupyter_mcp_spilled"))
            .is_some()
    });
    if let Some(i) = marker {
        window.include(i);
    }
    window
}

/// Renders an execution for the agent within `budget` (see [`budget`]): the outputs from
/// `output_offset` on when given, else the first and last ones when not all fit; the per-cell
/// text bound and the number of outputs halve until the whole result fits the total.
pub fn execution(
    view: &ExecutionView,
    budget: Budget,
    output_offset: Option<usize>,
) -> RenderedExecution {
    let mut b = budget;
    loop {
        let mut r = execution_within(view, b, output_offset);
        r.images = budget::cap_images(std::mem::take(&mut r.images));
        if budget::measure(&r.result, &r.text, &r.images) <= budget.total {
            return r;
        }
        match b.shrink() {
            Some(smaller) => b = smaller,
            None => return r,
        }
    }
}

/// [`execution`] on the blocking thread pool: rendering writes assets (files and the
/// SQLite index), which must not hold one of the async runtime's threads (issue 8 item 11).
pub async fn execution_off_runtime(
    view: ExecutionView,
    budget: Budget,
    output_offset: Option<usize>,
) -> RenderedExecution {
    off_runtime(move || execution(&view, budget, output_offset)).await
}

/// [`cells`] on the blocking thread pool (see [`execution_off_runtime`]).
pub async fn cells_off_runtime(
    notebook: String,
    views: Vec<CellView>,
    mode: String,
    budget: Budget,
) -> (Vec<CellEntry>, String, Vec<Content>, Option<usize>) {
    off_runtime(move || cells(&notebook, &views, &mode, budget)).await
}

/// Runs `f` on the blocking pool; a panic in `f` goes on unwinding in the caller.
async fn off_runtime<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        // Only a panic gets here (a blocking task is never cancelled before it starts
        // unless the runtime is shutting down, and then `into_panic` panics too).
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

fn execution_within(
    view: &ExecutionView,
    budget: Budget,
    output_offset: Option<usize>,
) -> RenderedExecution {
    let max_text_bytes = budget.text;
    let rec = &view.record;
    let window = window_for(&rec.outputs, budget, output_offset);
    let r = render_outputs(
        &rec.outputs,
        &window,
        max_text_bytes,
        &rec.notebook,
        Some(&rec.id),
    );
    let error = rec.error.as_ref().map(|e| ErrorEntry {
        ename: e
            .get("ename")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        evalue: e
            .get("evalue")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        traceback: traceback(e, max_text_bytes),
    });
    let mut text = format!(
        "execution {} [{}]{}",
        rec.id,
        rec.status.as_str(),
        rec.execution_count
            .map(|c| format!(" In[{c}]"))
            .unwrap_or_default()
    );
    if let Some(cell) = &rec.cell_id {
        text.push_str(&format!(" cell {cell}"));
    }
    text.push('\n');
    if !r.text.is_empty() {
        text.push_str(&r.text);
        if !text.ends_with('\n') {
            text.push('\n');
        }
    }
    if r.error.is_none() {
        if let Some(e) = &error {
            text.push_str(&format!("[error] {}: {}\n", e.ename, e.evalue));
        }
    }
    if let Some(p) = &view.input_prompt {
        text.push_str(&format!(
            "waiting for input: {p:?} — answer with send_input\n"
        ));
    }
    if rec.status == Status::Running || rec.status == Status::Pending {
        text.push_str("still running: poll with get_execution(execution_id, wait_s)\n");
    }
    if let Some(n) = &rec.note {
        text.push_str(&format!("note: {n}\n"));
    }
    let mut extra = images(&r);
    extra.extend(resource_links(&r, &format!("execution {}", rec.id)));
    RenderedExecution {
        result: ExecutionResult {
            execution_id: rec.id.clone(),
            notebook: rec.notebook.clone(),
            cell_id: rec.cell_id.clone(),
            status: rec.status,
            execution_count: rec.execution_count,
            outputs: entries(&r),
            error,
            started_at: rec.started_at.clone(),
            finished_at: rec.finished_at.clone(),
            duration_ms: view.duration_ms(),
            kernel_note: rec.note.clone(),
            input_prompt: view.input_prompt.clone(),
            outputs_shown: OutputsShown::of(&window),
        },
        text,
        images: extra,
    }
}

/// A cell as read_notebook returns it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CellEntry {
    /// Cell id: use it with edit_cell, execute_cell, delete_cell, ...
    pub id: String,
    /// Position in the notebook.
    pub index: usize,
    /// code, markdown or raw.
    pub cell_type: String,
    /// The cell's text (head and tail only when `source_truncated` is set).
    pub source: String,
    /// Present when `source` was cut to fit the result's budget: bytes shown, the full size,
    /// and where the whole source is (`source_asset`, read with read_asset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_truncated: Option<TruncatedInfo>,
    /// Resource URI of the whole source when it was cut.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_asset: Option<String>,
    /// Prompt number of its last run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_count: Option<i64>,
    /// Outputs (bounded; empty when outputs = "none").
    pub outputs: Vec<OutputEntry>,
    /// Present when not every output is in `outputs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outputs_shown: Option<OutputsShown>,
    /// Cell tags (e.g. skip-execution, raises-exception).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// The cells read_notebook shows within `budget` (see [`budget`]): cells in order while the
/// total lasts (at least one), each within what is left. Returns the entries, their text,
/// the extra content, and the index of the first cell not shown (to pass as `start`).
pub fn cells(
    notebook: &str,
    cells: &[CellView],
    mode: &str,
    budget: Budget,
) -> (Vec<CellEntry>, String, Vec<Content>, Option<usize>) {
    let (mut entries, mut text, mut extra) = (Vec::new(), String::new(), Vec::new());
    let mut left = budget.total;
    for (i, c) in cells.iter().enumerate() {
        if i > 0 && left < budget.total / 8 {
            return (entries, text, budget::cap_images(extra), Some(c.index));
        }
        let (entry, t, more) = cell(notebook, c, mode, budget.with_total(left));
        let cost = budget::measure(&entry, &t, &more);
        if i > 0 && cost > left {
            return (entries, text, budget::cap_images(extra), Some(c.index));
        }
        left = left.saturating_sub(cost);
        entries.push(entry);
        text.push_str(&t);
        extra.extend(more);
    }
    (entries, text, budget::cap_images(extra), None)
}

/// Renders one cell of `notebook` for read_notebook within `budget`; `mode` is
/// none/summary/full. The extra content is the cell's images ("full" only) and resource links
/// to its assets. Shrinks like [`execution`] until it fits.
pub fn cell(
    notebook: &str,
    c: &CellView,
    mode: &str,
    budget: Budget,
) -> (CellEntry, String, Vec<Content>) {
    let mut b = budget;
    loop {
        let r = cell_within(notebook, c, mode, b);
        if budget::measure(&r.0, &r.1, &r.2) <= budget.total {
            return r;
        }
        match b.shrink() {
            Some(smaller) => b = smaller,
            None => return r,
        }
    }
}

fn cell_within(
    notebook: &str,
    c: &CellView,
    mode: &str,
    budget: Budget,
) -> (CellEntry, String, Vec<Content>) {
    let window = window_for(&c.outputs, budget, None);
    let r = if mode == "none" {
        None
    } else {
        Some(render_outputs(
            &c.outputs,
            &window,
            budget.text,
            notebook,
            None,
        ))
    };
    // The source gets up to half the budget (a third of it, counting its two copies).
    let (source, source_truncated, source_asset) = bounded_source(notebook, c, budget.total / 6);
    let mut text = format!(
        "--- [{}] {} {}{}\n{}\n",
        c.index,
        c.cell_type,
        c.id,
        c.execution_count
            .map(|n| format!(" In[{n}]"))
            .unwrap_or_default(),
        source
    );
    if let Some(t) = &source_truncated {
        text.push_str(&format!(
            "[source cut: {} of {} bytes shown{}]\n",
            t.shown_bytes,
            t.total_bytes,
            source_asset
                .as_ref()
                .map(|a| format!("; read_asset(asset=\"{a}\") for all of it"))
                .unwrap_or_default()
        ));
    }
    if let Some(r) = &r {
        if !r.text.is_empty() {
            text.push_str(">>> outputs\n");
            text.push_str(&r.text);
            if !text.ends_with('\n') {
                text.push('\n');
            }
        }
    }
    let mut imgs = match (&r, mode) {
        (Some(r), "full") => images(r),
        _ => vec![],
    };
    if let Some(r) = &r {
        imgs.extend(resource_links(r, &format!("cell {} of {notebook}", c.id)));
    }
    (
        CellEntry {
            id: c.id.clone(),
            index: c.index,
            cell_type: c.cell_type.clone(),
            source,
            source_truncated,
            source_asset,
            execution_count: c.execution_count,
            outputs: r.as_ref().map(entries).unwrap_or_default(),
            outputs_shown: r.as_ref().and_then(|_| OutputsShown::of(&window)),
            tags: c.tags.clone(),
        },
        text,
        imgs,
    )
}

/// The cell's source, cut to head and tail past `max` bytes (the whole source then goes to
/// the asset store when one is installed).
fn bounded_source(
    notebook: &str,
    c: &CellView,
    max: usize,
) -> (String, Option<TruncatedInfo>, Option<String>) {
    let max = max.max(budget::MIN_TEXT_BYTES);
    if c.source.len() <= max {
        return (c.source.clone(), None, None);
    }
    let (shown, cut) = jmcp_outputs::bound_text(
        &c.source,
        max.saturating_sub(jmcp_outputs::MARKER_MAX_BYTES),
    );
    let asset = crate::assets::current().and_then(|assets| {
        use jmcp_outputs::AssetSink as _;
        crate::assets::blocking(|| assets.sink(notebook, None).text(c.index, &c.source))
    });
    let info = cut.map(|t| TruncatedInfo {
        shown_bytes: t.shown_bytes,
        total_bytes: t.total_bytes,
        next_offset: None,
        total_lines: Some(jmcp_outputs::count_lines(&c.source)),
    });
    (shown, info, asset.map(|a| a.uri))
}

/// A kernel as list_kernels and the kernel tools return it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct KernelEntry {
    /// Notebook path relative to the root.
    pub notebook: String,
    /// Kernelspec name.
    pub kernel_name: String,
    /// Process id of the kernel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// starting, idle, busy, dead, or none (no kernel).
    pub state: String,
    /// Executions waiting to run.
    pub queue_depth: i64,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// Remote kernels (--gateway-url): where it runs, `<gateway URL> kernel <kernel id>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Resident memory of the kernel and its child processes in bytes, at the last sample
    /// (every 2 s; every 250 ms with --kernel-memory-limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Seconds since the kernel last became idle (absent when it is not idle).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_seconds: Option<f64>,
}

impl From<KernelView> for KernelEntry {
    fn from(k: KernelView) -> Self {
        KernelEntry {
            notebook: k.notebook,
            kernel_name: k.kernel_name,
            pid: k.pid,
            state: k.state,
            queue_depth: k.queue_depth,
            started_at: k.started_at,
            location: k.location,
            memory_bytes: k.memory_bytes,
            idle_seconds: k.idle_seconds,
        }
    }
}

/// A successful result with structured content and a compact text for the model.
pub fn ok<T: Serialize>(value: &T, text: String, extra: Vec<Content>) -> CallToolResult {
    let mut content = vec![Content::text(text)];
    content.extend(extra);
    let mut r = CallToolResult::success(content);
    r.structured_content = serde_json::to_value(value).ok();
    r
}

/// A tool failure the agent can act on (`isError: true`).
pub fn fail(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![Content::text(message.into())])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn long_tracebacks_are_bounded() {
        let short = json!({"traceback": ["\u{1b}[31mValueError\u{1b}[0m: x"]});
        assert_eq!(traceback(&short, 8192), vec!["ValueError: x".to_string()]);
        let frames: Vec<String> = (0..2000).map(|i| format!("frame {i}")).collect();
        let long = json!({ "traceback": frames });
        let t = traceback(&long, 1000);
        assert!(
            t.iter().map(|f| f.len() + 1).sum::<usize>() <= 1000,
            "{t:?}"
        );
        assert_eq!(t.first().map(String::as_str), Some("frame 0"));
        assert_eq!(t.last().map(String::as_str), Some("frame 1999"));
        assert!(t.iter().any(|f| f.contains("bytes omitted")));
    }

    #[test]
    fn one_resource_link_per_asset() {
        let outputs = vec![json!({"output_type": "stream", "name": "stdout", "text": "x"})];
        let mut r = render(&outputs, &RenderOptions::default());
        let asset = jmcp_outputs::AssetRef {
            mime_type: "text/plain".into(),
            uri: "jupyter-mcp://assets/0123456789abcdef/aa.txt".into(),
            bytes: 5,
        };
        r.outputs[0].assets = vec![asset.clone(), asset];
        let links = resource_links(&r, "execution e");
        assert_eq!(links.len(), 1);
        let link = links[0].as_resource_link().expect("a resource link");
        assert_eq!(link.name, "aa.txt");
        assert_eq!(link.size, Some(5));
        assert_eq!(
            link.description.as_deref(),
            Some("text/plain of output 0 of execution e")
        );
    }
}
