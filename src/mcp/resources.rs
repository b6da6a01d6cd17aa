//! Assets as MCP resources (SPEC §3 "Beyond tools"): `resources/list` pages through the asset
//! index, `resources/read` returns an asset's content — text for text types, a base64 blob for
//! binary ones — and renews its lease. URIs are `jupyter-mcp://assets/<notebook-hash>/<sha>.<ext>`;
//! anything else is refused.

use base64::Engine as _;
use rmcp::model::{
    ListResourcesResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResult,
    Resource, ResourceContents,
};
use rmcp::ErrorData as McpError;
use serde_json::json;

use crate::assets::leases::AssetRow;
use crate::assets::{self, AssetError, Assets};

/// Resources per `resources/list` page.
const PAGE: usize = 100;

fn store() -> Result<Assets, McpError> {
    assets::current()
        .ok_or_else(|| McpError::internal_error("the asset store is not initialized", None))
}

/// The resource describing one indexed asset.
pub fn resource_of(row: &AssetRow) -> Resource {
    let name = row.uri.rsplit('/').next().unwrap_or(&row.uri).to_string();
    Resource::new(row.uri.clone(), name)
        .with_mime_type(row.mime_type.clone())
        .with_size(row.bytes.max(0) as u64)
        .with_description(format!(
            "{} output of {} (created {}, kept at least until {})",
            row.mime_type, row.notebook, row.created_at, row.lease_until
        ))
}

/// `resources/list`: every indexed asset, oldest first, [`PAGE`] per page; the cursor is the
/// offset of the next page.
pub async fn list(
    request: Option<PaginatedRequestParams>,
) -> Result<ListResourcesResult, McpError> {
    let offset = match request.and_then(|r| r.cursor) {
        None => 0,
        Some(c) => c.parse::<usize>().map_err(|_| {
            McpError::invalid_params(
                format!("invalid cursor {c:?}: pass nextCursor as given"),
                None,
            )
        })?,
    };
    let a = store()?;
    let (rows, total) = tokio::task::spawn_blocking(move || a.list(None, offset, PAGE))
        .await
        .map_err(|e| McpError::internal_error(format!("asset listing failed: {e}"), None))?
        .map_err(|e| McpError::internal_error(e.to_string(), None))?;
    let mut result = ListResourcesResult::with_all_items(rows.iter().map(resource_of).collect());
    let next = offset + rows.len();
    if next < total && !rows.is_empty() {
        result.next_cursor = Some(next.to_string());
    }
    Ok(result)
}

/// `resources/read`: the content of one asset.
pub async fn read(request: ReadResourceRequestParams) -> Result<ReadResourceResult, McpError> {
    let a = store()?;
    let uri = request.uri;
    let reference = uri.clone();
    let content = tokio::task::spawn_blocking(move || a.read(&reference))
        .await
        .map_err(|e| McpError::internal_error(format!("asset read failed: {e}"), None))?
        .map_err(|e| match e {
            AssetError::BadReference { .. } | AssetError::Outside { .. } => {
                McpError::invalid_params(e.to_string(), Some(json!({ "uri": uri })))
            }
            AssetError::NotFound { .. } => {
                McpError::resource_not_found(e.to_string(), Some(json!({ "uri": uri })))
            }
            other => McpError::internal_error(other.to_string(), None),
        })?;
    let contents = if content.is_text() {
        ResourceContents::text(
            String::from_utf8_lossy(&content.bytes).into_owned(),
            content.uri.clone(),
        )
    } else {
        ResourceContents::blob(
            base64::engine::general_purpose::STANDARD.encode(&content.bytes),
            content.uri.clone(),
        )
    }
    .with_mime_type(content.mime_type.clone());
    Ok(ReadResourceResult::new(vec![contents]))
}
