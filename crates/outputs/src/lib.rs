//! jmcp-outputs: Jupyter IOPub messages to nbformat outputs with nbclient 0.11
//! semantics ([`accumulate`], [`coalesce`]), and bounded rendering of those
//! outputs for an AI agent ([`render`](mod@render)).
//!
//! Messages are Jupyter messaging-spec IOPub messages given as
//! `(msg_type, content)`; outputs are nbformat v4 output dicts as
//! `serde_json::Value`s (key order as nbformat builds them).

pub mod accumulate;
pub mod coalesce;
pub mod render;
mod text;

pub use accumulate::{apply_display_update, output_from_msg, Applied, Finished, OutputAccumulator};
pub use coalesce::{apply_backspaces, apply_carriage_returns, coalesce_streams, Coalesced};
pub use render::{
    bound_text, count_lines, cut_points, describe, format_size, full_text, group_digits, multiline,
    render, render_with, strip_ansi, AssetLink, AssetRef, AssetSink, ErrorInfo, ImageContent,
    NoAssets, RenderOptions, Rendered, RenderedOutput, Truncated, MARKER_MAX_BYTES,
};
