//! Asset tools (SPEC §3, §4): `read_asset` pages a text asset by lines or shows an image,
//! `list_assets` lists a notebook's assets, `prune_assets` collects expired unreferenced ones
//! (or says what it would delete, and why). Also installs the process-wide asset store.

use rmcp::handler::server::common::schema_for_output;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock as Content};
use rmcp::{tool, tool_router, ErrorData as McpError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::resources::resource_of;
use super::results::{fail, ok};
use super::server::JupyterMcp;
use crate::assets::gc::{Action, Verdict};
use crate::assets::{self, page, AssetSettings, Assets};
use crate::engine::Engine;

/// Lines per read_asset page unless `limit` says otherwise.
const DEFAULT_LINES: usize = 500;
/// Most lines one page may have.
const MAX_LINES: usize = 20_000;
/// Most bytes of text one page may have.
const MAX_PAGE_BYTES: usize = 64 * 1024;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReadAssetArgs {
    /// The asset URI as given in an output's `asset` field (jupyter-mcp://assets/...).
    pub asset: String,
    /// First line to return (0-based; default 0). Text assets only.
    pub offset: Option<usize>,
    /// Number of lines to return (default 500; a page also stops at 64 KiB). Text assets only.
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListAssetsArgs {
    /// Only the assets of this notebook (path relative to the root); default: all.
    pub notebook: Option<String>,
    /// Skip this many (default 0).
    pub offset: Option<usize>,
    /// At most this many (default 100).
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct PruneAssetsArgs {
    /// Only the assets of this notebook (path relative to the root); default: all.
    pub notebook: Option<String>,
    /// Only report what would be deleted and why (default false).
    pub dry_run: Option<bool>,
}

/// One page of a text asset, or an image asset's description.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AssetRead {
    /// The asset URI.
    pub asset: String,
    /// Mime type of the asset.
    pub mime_type: String,
    /// Size of the whole asset in bytes.
    pub bytes: usize,
    /// The lines of this page, with their line breaks (text assets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// First line of this page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<usize>,
    /// Offset of the next page (equals total_lines at the end).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<usize>,
    /// Lines in the whole text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_lines: Option<usize>,
    /// True when this page reaches the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eof: Option<bool>,
    /// Images: what is shown (e.g. "PNG 3000x2000, shown at 1024x683").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Anything else to know (a line cut at the page size, a binary asset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// An indexed asset.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AssetInfo {
    /// The asset URI.
    pub uri: String,
    /// Notebook it was extracted from.
    pub notebook: String,
    /// Mime type.
    pub mime_type: String,
    /// Size in bytes.
    pub bytes: i64,
    /// RFC 3339.
    pub created_at: String,
    /// Not collected before this time (RFC 3339); renewed on every read.
    pub lease_until: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AssetList {
    /// Assets, oldest first.
    pub assets: Vec<AssetInfo>,
    /// How many there are in all.
    pub total: usize,
    /// Offset of the next page, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<usize>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PruneResult {
    /// Nothing was deleted (report only).
    pub dry_run: bool,
    /// The time leases were compared with (RFC 3339).
    pub now: String,
    /// Deleted (or, in a dry run, would be deleted), with the reason.
    pub deleted: Vec<Verdict>,
    /// Kept, with the reason.
    pub kept: Vec<Verdict>,
    /// Index entries whose file was already gone (dropped).
    pub forgotten: Vec<Verdict>,
    /// Bytes freed (or that would be).
    pub freed_bytes: i64,
}

impl JupyterMcp {
    /// The asset tools, after installing the asset store of `engine` for result rendering.
    pub(crate) fn assets_router(engine: &Engine) -> ToolRouter<JupyterMcp> {
        let config = engine.config();
        let _installed = assets::install(Assets::new(
            &config.data_dir,
            config.root.path(),
            engine.store().clone(),
            AssetSettings::from_config(config),
        ));
        Self::asset_tools()
    }
}

fn store() -> Result<Assets, CallToolResult> {
    assets::current().ok_or_else(|| fail("the asset store is not initialized"))
}

/// Runs blocking asset work (index queries in `state.db`, asset files) off the async threads,
/// bounded (SPEC §8): it fails at once while the data dir's breaker is open, and after
/// `--storage-timeout` times `slow` (1 for one asset or one page of the index; more for
/// `prune_assets`, which also reads every notebook, each folder bounded on its own) when the
/// data dir does not answer. An abandoned call finishes on its own thread.
async fn off_thread<R: Send + 'static>(
    dir: &std::path::Path,
    what: &str,
    slow: u32,
    f: impl FnOnce() -> Result<R, assets::AssetError> + Send + 'static,
) -> Result<R, CallToolResult> {
    let r = match crate::storage::current() {
        Some(s) => {
            let bound = s.timeout * slow.max(1);
            s.run_for(crate::storage::Place::DataDir, dir, what, bound, f)
                .await
                .map_err(|e| fail(e.to_string()))?
        }
        None => tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| fail(format!("asset task failed: {e}")))?,
    };
    r.map_err(|e| fail(e.to_string()))
}

#[tool_router(router = asset_tools, vis = "pub(crate)")]
impl JupyterMcp {
    /// Read an asset (the full content of an output, named by the `asset` URI in outputs): text assets come back one page of lines at a time (offset, limit; keep calling with offset=next_offset until eof), images as image content.
    #[tool(output_schema = schema_for_output::<AssetRead>())]
    async fn read_asset(
        &self,
        Parameters(a): Parameters<ReadAssetArgs>,
    ) -> Result<CallToolResult, McpError> {
        let store = tool_try!(store());
        let s = store.clone();
        let reference = a.asset.clone();
        let dir = store.dir().to_path_buf();
        let content =
            tool_try!(off_thread(&dir, "reading the asset", 1, move || s.read(&reference)).await);
        let mut result = AssetRead {
            asset: content.uri.clone(),
            mime_type: content.mime_type.clone(),
            bytes: content.bytes.len(),
            text: None,
            offset: None,
            next_offset: None,
            total_lines: None,
            eof: None,
            image: None,
            note: None,
        };
        if content.is_text() {
            let text = String::from_utf8_lossy(&content.bytes);
            let limit = a.limit.unwrap_or(DEFAULT_LINES).clamp(1, MAX_LINES);
            let p = page::page(&text, a.offset.unwrap_or(0), limit, MAX_PAGE_BYTES);
            let mut shown = p.text.clone();
            if !shown.is_empty() && !shown.ends_with('\n') {
                shown.push('\n');
            }
            shown.push_str(&if p.eof {
                format!(
                    "[lines {}-{} of {}: end of {}]",
                    p.offset, p.next_offset, p.total_lines, content.uri
                )
            } else {
                format!(
                    "[lines {}-{} of {}; next page: read_asset(asset=\"{}\", offset={})]",
                    p.offset, p.next_offset, p.total_lines, content.uri, p.next_offset
                )
            });
            if p.line_cut {
                result.note = Some(format!(
                    "line {} is longer than {MAX_PAGE_BYTES} bytes and was cut; resources/read returns the whole asset",
                    p.offset
                ));
            }
            result.text = Some(p.text);
            result.offset = Some(p.offset);
            result.next_offset = Some(p.next_offset);
            result.total_lines = Some(p.total_lines);
            result.eof = Some(p.eof);
            return Ok(ok(&result, shown, vec![]));
        }
        if let Some((image, detail)) = store.image_for_agent(&content) {
            let text = format!("{} ({detail}), {} bytes", content.uri, content.bytes.len());
            result.image = Some(detail);
            return Ok(ok(
                &result,
                text,
                vec![Content::image(image.data_base64, image.mime_type)],
            ));
        }
        let note = format!(
            "{} is binary ({}, {} bytes): read it with resources/read, which returns it as a base64 blob",
            content.uri,
            content.mime_type,
            content.bytes.len()
        );
        result.note = Some(note.clone());
        Ok(ok(&result, note, vec![]))
    }

    /// List the assets (stored outputs: images, HTML, long texts, ...) of a notebook, or of all notebooks, with their URIs and leases.
    #[tool(output_schema = schema_for_output::<AssetList>())]
    async fn list_assets(
        &self,
        Parameters(a): Parameters<ListAssetsArgs>,
    ) -> Result<CallToolResult, McpError> {
        let notebook = tool_try!(self.optional_notebook(a.notebook.as_deref()).await);
        let store = tool_try!(store());
        let offset = a.offset.unwrap_or(0);
        let limit = a.limit.unwrap_or(100).clamp(1, 1000);
        let (rows, total) = tool_try!(
            off_thread(store.dir(), "listing assets", 1, {
                let store = store.clone();
                move || store.list(notebook.as_deref(), offset, limit)
            })
            .await
        );
        let mut text = format!(
            "{total} asset(s){}\n",
            if rows.len() < total {
                format!(", showing {}-{}", offset, offset + rows.len())
            } else {
                String::new()
            }
        );
        for r in &rows {
            text.push_str(&format!(
                "{} {} {} B ({}; lease until {})\n",
                r.uri, r.mime_type, r.bytes, r.notebook, r.lease_until
            ));
        }
        let links = rows
            .iter()
            .map(|r| Content::resource_link(resource_of(r)))
            .collect();
        let next = offset + rows.len();
        let list = AssetList {
            next_offset: (next < total && !rows.is_empty()).then_some(next),
            assets: rows
                .into_iter()
                .map(|r| AssetInfo {
                    uri: r.uri,
                    notebook: r.notebook,
                    mime_type: r.mime_type,
                    bytes: r.bytes,
                    created_at: r.created_at,
                    lease_until: r.lease_until,
                })
                .collect(),
            total,
        };
        Ok(ok(&list, text, links))
    }

    /// Delete assets whose lease has expired and that no notebook under the root and no stored execution references (never anything else). With dry_run, only report what would be deleted and why.
    #[tool(output_schema = schema_for_output::<PruneResult>())]
    async fn prune_assets(
        &self,
        Parameters(a): Parameters<PruneAssetsArgs>,
    ) -> Result<CallToolResult, McpError> {
        let notebook = tool_try!(self.optional_notebook(a.notebook.as_deref()).await);
        let store = tool_try!(store());
        let dry_run = a.dry_run.unwrap_or(false);
        let report = tool_try!(
            off_thread(store.dir(), "pruning assets", 12, {
                let store = store.clone();
                move || store.prune(notebook.as_deref(), dry_run, chrono::Utc::now())
            })
            .await
        );
        let mut result = PruneResult {
            dry_run: report.dry_run,
            now: report.now,
            deleted: vec![],
            kept: vec![],
            forgotten: vec![],
            freed_bytes: report.freed_bytes,
        };
        for v in report.verdicts {
            match v.action {
                Action::Delete => result.deleted.push(v),
                Action::Keep => result.kept.push(v),
                Action::Forget => result.forgotten.push(v),
            }
        }
        let verb = if dry_run { "would delete" } else { "deleted" };
        let mut text = format!(
            "{verb} {} asset(s) ({} bytes); kept {}; {} index entr(ies) without a file{}\n",
            result.deleted.len(),
            result.freed_bytes,
            result.kept.len(),
            result.forgotten.len(),
            if dry_run {
                " (dry run: nothing changed)"
            } else {
                ""
            }
        );
        for v in result.deleted.iter().chain(&result.kept).take(50) {
            let action = if v.action == Action::Delete {
                verb
            } else {
                "keep"
            };
            text.push_str(&format!("{action} {}: {}\n", v.uri, v.reason));
        }
        Ok(ok(&result, text, vec![]))
    }
}
