//! Kernel tools: kernelspecs, start, list, interrupt, restart, shutdown, variables.

use std::time::Duration;

use rmcp::handler::server::common::schema_for_output;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router, ErrorData as McpError};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use super::params::*;
use super::results::{ok, KernelEntry};
use super::server::{tool_error, JupyterMcp};
use crate::engine::{EngineResult, KernelView};

#[derive(Serialize, JsonSchema)]
pub struct KernelspecEntry {
    /// Name to pass as kernel_name.
    pub name: String,
    /// Human-readable name.
    pub display_name: String,
    /// Programming language.
    pub language: String,
    /// Folder of the kernelspec.
    pub path: String,
}

#[derive(Serialize, JsonSchema)]
pub struct KernelspecList {
    /// Installed kernelspecs.
    pub kernelspecs: Vec<KernelspecEntry>,
}

#[derive(Serialize, JsonSchema)]
pub struct KernelList {
    /// Kernels of this server, by notebook.
    pub kernels: Vec<KernelEntry>,
}

#[derive(Serialize, JsonSchema)]
pub struct VariableList {
    /// User variables: name, type, and where known shape, len and size_bytes.
    pub variables: Vec<Value>,
}

fn kernel_result(r: EngineResult<KernelView>, verb: &str) -> CallToolResult {
    match r {
        Ok(k) => {
            let text = format!("{verb}: {}", describe_kernel(&k));
            ok(&KernelEntry::from(k), text, vec![])
        }
        Err(e) => tool_error(e),
    }
}

/// "kernel python3 for a.ipynb is idle (pid 123)", or "a.ipynb has no kernel running".
fn describe_kernel(k: &KernelView) -> String {
    if k.kernel_name.is_empty() || k.state == "none" {
        return format!("{} has no kernel running", k.notebook);
    }
    if let Some(at) = &k.location {
        return format!(
            "kernel {} for {} is {} (remote: {at})",
            k.kernel_name, k.notebook, k.state
        );
    }
    match k.pid {
        Some(pid) => format!(
            "kernel {} for {} is {} (pid {pid})",
            k.kernel_name, k.notebook, k.state
        ),
        None => format!(
            "kernel {} for {} is {} (no process)",
            k.kernel_name, k.notebook, k.state
        ),
    }
}

#[tool_router(router = kernel_router, vis = "pub(crate)")]
impl JupyterMcp {
    /// List the installed Jupyter kernels (languages/environments code can run in).
    #[tool(output_schema = schema_for_output::<KernelspecList>())]
    async fn list_kernelspecs(&self) -> Result<CallToolResult, McpError> {
        let specs = match &self.engine.config().gateway {
            Some(gateway) => match gateway.kernelspecs().await {
                Ok((_, specs)) => specs,
                Err(e) => return Ok(tool_error(e.into())),
            },
            None => tokio::task::spawn_blocking(jmcp_kernel::list_kernelspecs)
                .await
                .unwrap_or_default(),
        };
        let text = specs
            .iter()
            .map(|s| format!("{} — {} ({})", s.name, s.display_name, s.language))
            .collect::<Vec<_>>()
            .join("\n");
        let kernelspecs = specs
            .into_iter()
            .map(|s| KernelspecEntry {
                name: s.name,
                display_name: s.display_name,
                language: s.language,
                path: s.resource_dir.to_string_lossy().to_string(),
            })
            .collect();
        Ok(ok(
            &KernelspecList { kernelspecs },
            if text.is_empty() {
                "no kernelspecs installed".into()
            } else {
                text
            },
            vec![],
        ))
    }

    /// Start the notebook's kernel now (it also starts by itself on the first execution).
    #[tool(output_schema = schema_for_output::<KernelEntry>())]
    async fn start_kernel(
        &self,
        Parameters(a): Parameters<StartKernelArgs>,
    ) -> Result<CallToolResult, McpError> {
        let path = tool_try!(self.path(&a.notebook).await);
        Ok(kernel_result(
            self.engine
                .start_kernel(&path, a.kernel_name.as_deref())
                .await,
            "started",
        ))
    }

    /// List the running kernels: notebook, kernel name, pid, state (starting/idle/busy/dead), queued executions.
    #[tool(output_schema = schema_for_output::<KernelList>())]
    async fn list_kernels(&self) -> Result<CallToolResult, McpError> {
        Ok(match self.engine.list_kernels().await {
            Ok(list) => {
                let text = if list.is_empty() {
                    "no kernels running".to_string()
                } else {
                    list.iter()
                        .map(|k| format!("{}, {} queued", describe_kernel(k), k.queue_depth))
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                ok(
                    &KernelList {
                        kernels: list.into_iter().map(KernelEntry::from).collect(),
                    },
                    text,
                    vec![],
                )
            }
            Err(e) => tool_error(e),
        })
    }

    /// Interrupt the running cell of the notebook (like pressing Stop). Its execution becomes "interrupted"; variables are kept.
    #[tool(output_schema = schema_for_output::<KernelEntry>())]
    async fn interrupt_kernel(
        &self,
        Parameters(a): Parameters<NotebookArg>,
    ) -> Result<CallToolResult, McpError> {
        // A notebook with a session is found in memory: interrupting needs no storage and
        // answers while the root does not (SPEC §8).
        let path = match self.engine.known_notebook_path(&a.notebook) {
            Some(p) => p,
            None => tool_try!(self.path(&a.notebook).await),
        };
        Ok(kernel_result(
            self.engine.interrupt(&path).await,
            "interrupted",
        ))
    }

    /// Restart the notebook's kernel: all variables and imports are lost; queued cells run on the new kernel.
    #[tool(output_schema = schema_for_output::<KernelEntry>())]
    async fn restart_kernel(
        &self,
        Parameters(a): Parameters<NotebookArg>,
    ) -> Result<CallToolResult, McpError> {
        let path = tool_try!(self.path(&a.notebook).await);
        Ok(kernel_result(self.engine.restart(&path).await, "restarted"))
    }

    /// Shut the notebook's kernel down (frees its memory); queued executions are cancelled.
    #[tool(output_schema = schema_for_output::<KernelEntry>())]
    async fn shutdown_kernel(
        &self,
        Parameters(a): Parameters<NotebookArg>,
    ) -> Result<CallToolResult, McpError> {
        let path = tool_try!(self.path(&a.notebook).await);
        Ok(kernel_result(
            self.engine.shutdown_kernel(&path).await,
            "shut down",
        ))
    }

    /// List the variables defined in the notebook's kernel: name, type, shape or length, size in bytes.
    #[tool(output_schema = schema_for_output::<VariableList>())]
    async fn list_variables(
        &self,
        Parameters(a): Parameters<NotebookArg>,
    ) -> Result<CallToolResult, McpError> {
        let path = tool_try!(self.path(&a.notebook).await);
        Ok(
            match self
                .engine
                .list_variables(&path, Duration::from_secs(10))
                .await
            {
                Ok(vars) => {
                    let text = if vars.is_empty() {
                        "no user variables".to_string()
                    } else {
                        vars.iter()
                            .map(|v| {
                                let mut s = format!(
                                    "{}: {}",
                                    v["name"].as_str().unwrap_or("?"),
                                    v["type"].as_str().unwrap_or("?")
                                );
                                if let Some(sh) = v.get("shape") {
                                    s.push_str(&format!(" shape {sh}"));
                                } else if let Some(l) = v.get("len") {
                                    s.push_str(&format!(" len {l}"));
                                }
                                if let Some(b) = v.get("size_bytes") {
                                    s.push_str(&format!(" {b} bytes"));
                                }
                                s
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    };
                    ok(&VariableList { variables: vars }, text, vec![])
                }
                Err(e) => tool_error(e),
            },
        )
    }
}
