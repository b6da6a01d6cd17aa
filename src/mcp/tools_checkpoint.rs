//! Checkpoint tools (SPEC §6): save_environment, load_environment, list_checkpoints,
//! delete_checkpoint. Arguments and results live here; the work is in `crate::checkpoint`.

use std::time::Duration;

use rmcp::handler::server::common::schema_for_output;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router, ErrorData as McpError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::results::{fail, ok};
use super::server::JupyterMcp;
use crate::checkpoint::{self, CheckpointError};

/// Default time limit of the kernel's part of a save or load.
const DEFAULT_TIMEOUT_S: f64 = 600.0;

fn timeout(t: Option<f64>) -> Duration {
    Duration::from_secs_f64(t.unwrap_or(DEFAULT_TIMEOUT_S).clamp(1.0, 86_400.0))
}

fn error(e: CheckpointError) -> CallToolResult {
    fail(e.to_string())
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SaveEnvironmentArgs {
    /// Path of the .ipynb file whose kernel variables to save, relative to the root.
    pub notebook: String,
    /// Checkpoint name, e.g. "after-training" (1-128 characters, no '/', '\\' or '..').
    /// Saving again under the same name replaces that checkpoint.
    pub name: String,
    /// Only these global variables (default: every user variable that can be serialized,
    /// including imported module aliases, functions and classes defined in the notebook).
    pub variables: Option<Vec<String>>,
    /// Seconds the kernel may take to serialize (default 600). It waits behind a running cell.
    pub timeout_s: Option<f64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct LoadEnvironmentArgs {
    /// Path of the .ipynb file whose kernel receives the variables, relative to the root.
    pub notebook: String,
    /// Name of the checkpoint (see list_checkpoints).
    pub name: String,
    /// Install missing packages the saved variables need, in their saved versions, with the
    /// kernel's own pip (default false: only report them).
    pub auto_install: Option<bool>,
    /// Seconds the kernel may take to restore (default 600).
    pub timeout_s: Option<f64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListCheckpointsArgs {
    /// Only checkpoints of this notebook (default: all notebooks).
    pub notebook: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct DeleteCheckpointArgs {
    /// Path of the .ipynb file the checkpoint belongs to.
    pub notebook: String,
    /// Name of the checkpoint.
    pub name: String,
}

/// A saved variable.
#[derive(Serialize, JsonSchema)]
pub struct SavedVariableEntry {
    /// Global name.
    pub name: String,
    /// Python type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Bytes of its serialized form.
    pub bytes: u64,
    /// Packages (name==version) its serialized form refers to.
    pub packages: Vec<String>,
}

/// A variable that was not saved or not restored.
#[derive(Serialize, JsonSchema)]
pub struct SkippedVariableEntry {
    /// Global name.
    pub name: String,
    /// Why.
    pub reason: String,
}

#[derive(Serialize, JsonSchema)]
pub struct SavedEnvironment {
    /// Notebook path relative to the root.
    pub notebook: String,
    /// Checkpoint name.
    pub name: String,
    /// The data file.
    pub path: String,
    /// Size of the data file in bytes.
    pub bytes: u64,
    /// SHA-256 of the data file.
    pub sha256: String,
    /// RFC 3339.
    pub created_at: String,
    /// The kernel's Python version.
    pub python_version: String,
    /// Number of installed packages recorded.
    pub packages: usize,
    /// Variables saved.
    pub saved: Vec<SavedVariableEntry>,
    /// Variables not saved, with the reason.
    pub skipped: Vec<SkippedVariableEntry>,
    /// Seconds the kernel took (serialization and writing).
    pub kernel_seconds: f64,
    /// Seconds the server took hashing (HMAC-SHA256 and SHA-256).
    pub hash_seconds: f64,
    /// Seconds the server took in total (hashing, fsync, atomic renames).
    pub server_seconds: f64,
}

#[derive(Serialize, JsonSchema)]
pub struct RestoredVariableEntry {
    /// Global name.
    pub name: String,
    /// Python type.
    #[serde(rename = "type")]
    pub type_name: String,
}

#[derive(Serialize, JsonSchema)]
pub struct MissingPackageEntry {
    /// Distribution name.
    pub name: String,
    /// Version at save time.
    pub version: String,
    /// Saved variables that need it.
    pub needed_by: Vec<String>,
    /// Installed by this load (auto_install).
    pub installed: bool,
    /// Why it was not installed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Serialize, JsonSchema)]
pub struct VersionMismatchEntry {
    /// Distribution name.
    pub name: String,
    /// Version at save time.
    pub saved: String,
    /// Version in the kernel now.
    pub installed: String,
}

#[derive(Serialize, JsonSchema)]
pub struct LoadedEnvironment {
    /// Notebook path relative to the root.
    pub notebook: String,
    /// Checkpoint name.
    pub name: String,
    /// When the checkpoint was saved (RFC 3339).
    pub created_at: String,
    /// Size of the data file in bytes.
    pub bytes: u64,
    /// Variables now defined in the kernel.
    pub restored: Vec<RestoredVariableEntry>,
    /// Variables not restored, with the reason.
    pub skipped: Vec<SkippedVariableEntry>,
    /// Packages the saved variables need that the kernel lacked (installed or not).
    pub missing_packages: Vec<MissingPackageEntry>,
    /// Number of other packages of the saved environment that the kernel lacks (not needed by
    /// the saved variables; not installed).
    pub other_missing_packages: usize,
    /// Packages installed in another version than at save time.
    pub version_mismatches: Vec<VersionMismatchEntry>,
    /// Variables not restored because a package they need is missing.
    pub missing_package_variables: Vec<String>,
    /// Python version at save time.
    pub python_version_saved: String,
    /// Python version of the kernel.
    pub python_version_kernel: String,
    /// Remarks (e.g. a kernel was started).
    pub notes: Vec<String>,
    /// Seconds the server took to verify the signature over the whole file.
    pub verify_seconds: f64,
    /// Seconds the kernel took to read, check and restore.
    pub kernel_seconds: f64,
}

#[derive(Serialize, JsonSchema)]
pub struct CheckpointEntry {
    /// Checkpoint name.
    pub name: String,
    /// Notebook path relative to the root.
    pub notebook: String,
    /// RFC 3339.
    pub created_at: String,
    /// Size of the data file in bytes.
    pub bytes: u64,
    /// The kernel's Python version at save time.
    pub python_version: String,
    /// Saved variable names.
    pub variables: Vec<String>,
    /// The metadata signature holds for this server's key (the data is verified on load).
    pub verified: bool,
}

#[derive(Serialize, JsonSchema)]
pub struct CheckpointList {
    /// Checkpoints, by notebook, newest first.
    pub checkpoints: Vec<CheckpointEntry>,
}

#[derive(Serialize, JsonSchema)]
pub struct CheckpointDeleted {
    /// Always true.
    pub ok: bool,
    /// Notebook path relative to the root.
    pub notebook: String,
    /// The deleted checkpoint.
    pub name: String,
}

fn skipped(v: Vec<checkpoint::SkippedVariable>) -> Vec<SkippedVariableEntry> {
    v.into_iter()
        .map(|s| SkippedVariableEntry {
            name: s.name,
            reason: s.reason,
        })
        .collect()
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn save_result(r: checkpoint::SaveReport) -> CallToolResult {
    let mut text = format!(
        "saved checkpoint '{}' of {}: {} variable(s), {} (kernel {:.2} s, server {:.2} s)\nsaved: {}",
        r.name,
        r.notebook,
        r.saved.len(),
        mb(r.bytes),
        r.kernel_seconds,
        r.server_seconds,
        r.saved
            .iter()
            .map(|v| format!("{} ({})", v.name, v.type_name))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for s in &r.skipped {
        text.push_str(&format!("\nskipped {}: {}", s.name, s.reason));
    }
    let result = SavedEnvironment {
        notebook: r.notebook,
        name: r.name,
        path: r.path.to_string_lossy().into_owned(),
        bytes: r.bytes,
        sha256: r.sha256,
        created_at: r.created_at,
        python_version: r.python_version,
        packages: r.packages,
        saved: r
            .saved
            .into_iter()
            .map(|v| SavedVariableEntry {
                name: v.name,
                type_name: v.type_name,
                bytes: v.bytes,
                packages: v.packages,
            })
            .collect(),
        skipped: skipped(r.skipped),
        kernel_seconds: r.kernel_seconds,
        hash_seconds: r.hash_seconds,
        server_seconds: r.server_seconds,
    };
    ok(&result, text, vec![])
}

fn load_result(r: checkpoint::LoadReport) -> CallToolResult {
    let mut text = format!(
        "loaded checkpoint '{}' of {} (saved {}): restored {} variable(s): {}",
        r.name,
        r.notebook,
        r.created_at,
        r.restored.len(),
        r.restored
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for s in &r.skipped {
        text.push_str(&format!("\nnot restored {}: {}", s.name, s.reason));
    }
    for m in &r.missing_packages {
        let state = if m.installed {
            "installed now".to_string()
        } else {
            format!(
                "NOT installed{}",
                m.error
                    .as_ref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            )
        };
        text.push_str(&format!(
            "\nmissing package {}=={} needed by {}: {state}",
            m.name,
            m.version,
            m.needed_by.join(", ")
        ));
    }
    if !r.other_missing_packages.is_empty() {
        text.push_str(&format!(
            "\n{} other package(s) of the saved environment are not installed (not needed by the restored variables)",
            r.other_missing_packages.len()
        ));
    }
    if !r.version_mismatches.is_empty() {
        let shown: Vec<String> = r
            .version_mismatches
            .iter()
            .take(10)
            .map(|v| format!("{} {} -> {}", v.name, v.saved, v.installed))
            .collect();
        text.push_str(&format!(
            "\npackages with another version than at save time: {}{}",
            shown.join(", "),
            if r.version_mismatches.len() > 10 {
                ", ..."
            } else {
                ""
            }
        ));
    }
    for n in &r.notes {
        text.push_str(&format!("\nnote: {n}"));
    }
    let result = LoadedEnvironment {
        notebook: r.notebook,
        name: r.name,
        created_at: r.created_at,
        bytes: r.bytes,
        restored: r
            .restored
            .into_iter()
            .map(|v| RestoredVariableEntry {
                name: v.name,
                type_name: v.type_name,
            })
            .collect(),
        skipped: skipped(r.skipped),
        missing_packages: r
            .missing_packages
            .into_iter()
            .map(|m| MissingPackageEntry {
                name: m.name,
                version: m.version,
                needed_by: m.needed_by,
                installed: m.installed,
                error: m.error,
            })
            .collect(),
        other_missing_packages: r.other_missing_packages.len(),
        version_mismatches: r
            .version_mismatches
            .into_iter()
            .map(|v| VersionMismatchEntry {
                name: v.name,
                saved: v.saved,
                installed: v.installed,
            })
            .collect(),
        missing_package_variables: r.missing_package_variables,
        python_version_saved: r.python_version_saved,
        python_version_kernel: r.python_version_kernel,
        notes: r.notes,
        verify_seconds: r.verify_seconds,
        kernel_seconds: r.kernel_seconds,
    };
    ok(&result, text, vec![])
}

#[tool_router(router = checkpoint_router, vis = "pub(crate)")]
impl JupyterMcp {
    /// Save the notebook kernel's variables (DataFrames, models, arrays, functions, ...) to a signed checkpoint on disk, so they survive a kernel restart or crash. Objects that cannot be saved (open files, sockets, generators) are skipped with the reason.
    #[tool(output_schema = schema_for_output::<SavedEnvironment>())]
    async fn save_environment(
        &self,
        Parameters(a): Parameters<SaveEnvironmentArgs>,
    ) -> Result<CallToolResult, McpError> {
        Ok(
            match checkpoint::save(
                &self.engine,
                &a.notebook,
                &a.name,
                a.variables,
                timeout(a.timeout_s),
            )
            .await
            {
                Ok(r) => save_result(r),
                Err(e) => error(e),
            },
        )
    }

    /// Restore the variables of a checkpoint into the notebook's kernel (started if needed), after verifying that the file is the one this server signed. Reports restored and skipped variables and missing packages; with auto_install=true, missing packages are installed in their saved versions first.
    #[tool(output_schema = schema_for_output::<LoadedEnvironment>())]
    async fn load_environment(
        &self,
        Parameters(a): Parameters<LoadEnvironmentArgs>,
    ) -> Result<CallToolResult, McpError> {
        Ok(
            match checkpoint::load(
                &self.engine,
                &a.notebook,
                &a.name,
                a.auto_install.unwrap_or(false),
                timeout(a.timeout_s),
            )
            .await
            {
                Ok(r) => load_result(r),
                Err(e) => error(e),
            },
        )
    }

    /// List saved checkpoints (of one notebook, or all): name, notebook, time, size, Python version, variables.
    #[tool(output_schema = schema_for_output::<CheckpointList>())]
    async fn list_checkpoints(
        &self,
        Parameters(a): Parameters<ListCheckpointsArgs>,
    ) -> Result<CallToolResult, McpError> {
        Ok(
            match checkpoint::list(&self.engine, a.notebook.as_deref()).await {
                Ok(list) => {
                    let text = if list.is_empty() {
                        "no checkpoints".to_string()
                    } else {
                        list.iter()
                            .map(|c| {
                                format!(
                                    "{} '{}' {} {} python {}{}: {}",
                                    c.notebook,
                                    c.name,
                                    c.created_at,
                                    mb(c.bytes),
                                    c.python_version,
                                    if c.verified {
                                        ""
                                    } else {
                                        " (UNVERIFIED signature)"
                                    },
                                    c.variables.join(", ")
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    };
                    let checkpoints = list
                        .into_iter()
                        .map(|c| CheckpointEntry {
                            name: c.name,
                            notebook: c.notebook,
                            created_at: c.created_at,
                            bytes: c.bytes,
                            python_version: c.python_version,
                            variables: c.variables,
                            verified: c.verified,
                        })
                        .collect();
                    ok(&CheckpointList { checkpoints }, text, vec![])
                }
                Err(e) => error(e),
            },
        )
    }

    /// Delete a checkpoint (its data and metadata files).
    #[tool(output_schema = schema_for_output::<CheckpointDeleted>())]
    async fn delete_checkpoint(
        &self,
        Parameters(a): Parameters<DeleteCheckpointArgs>,
    ) -> Result<CallToolResult, McpError> {
        Ok(
            match checkpoint::delete(&self.engine, &a.notebook, &a.name).await {
                Ok(()) => {
                    let notebook = self
                        .engine
                        .resolve_notebook(&a.notebook)
                        .await
                        .map(|p| p.rel)
                        .unwrap_or(a.notebook);
                    let text = format!("deleted checkpoint '{}' of {}", a.name, notebook);
                    ok(
                        &CheckpointDeleted {
                            ok: true,
                            notebook,
                            name: a.name,
                        },
                        text,
                        vec![],
                    )
                }
                Err(e) => error(e),
            },
        )
    }
}
