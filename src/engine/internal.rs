//! Code the server itself runs in a notebook's kernel (variable listing, checkpoints, package
//! snapshots): sent directly on the shell channel, not recorded as an execution, not stored in
//! the kernel's history, and never written to the notebook.

use std::time::Duration;

use jmcp_kernel::{ExecuteOptions, KernelEvent};
use serde_json::Value;

use super::{Engine, EngineError, EngineResult};
use crate::paths::RootedPath;

/// What an internal run printed and how it ended.
#[derive(Debug, Clone)]
pub struct InternalRun {
    /// Concatenated `stdout` stream text.
    pub stdout: String,
    /// Concatenated `stderr` stream text.
    pub stderr: String,
    /// `execute_reply` content (`status` is `ok` or `error` with `ename`/`evalue`/`traceback`).
    pub reply: Value,
}

impl InternalRun {
    /// True when the kernel replied `ok`.
    pub fn ok(&self) -> bool {
        self.reply.get("status").and_then(Value::as_str) == Some("ok")
    }

    /// `ename: evalue` of a failed run.
    pub fn error_summary(&self) -> Option<String> {
        let ename = self.reply.get("ename").and_then(Value::as_str)?;
        let evalue = self
            .reply
            .get("evalue")
            .and_then(Value::as_str)
            .unwrap_or("");
        Some(format!("{ename}: {evalue}"))
    }
}

impl Engine {
    /// Runs `code` in the notebook's running kernel and collects its streams until both the
    /// `execute_reply` and IOPub `status: idle` arrived. It queues behind a running cell on the
    /// kernel's shell channel; `timeout` bounds the whole wait ([`EngineError::Timeout`] says
    /// the kernel is busy). Errors with [`EngineError::NoKernel`] when no kernel runs, and
    /// [`EngineError::InvalidArgument`] when the kernel is not an IPython kernel.
    pub async fn run_internal(
        &self,
        path: &RootedPath,
        code: &str,
        timeout: Duration,
    ) -> EngineResult<InternalRun> {
        let session = self.session(path);
        let kernel = session
            .current_kernel()
            .ok_or_else(|| EngineError::NoKernel {
                notebook: path.rel.clone(),
            })?;
        if !kernel.spec.is_ipykernel() {
            // The server's own code (variables, checkpoints) is IPython code.
            return Err(EngineError::InvalidArgument(format!(
                "this needs an IPython kernel (ipykernel); {} runs the '{}' kernel ({}). \
                 Use execute_code with that language instead",
                path.rel, kernel.spec.name, kernel.spec.language
            )));
        }
        let opts = ExecuteOptions {
            store_history: false,
            allow_stdin: false,
            stop_on_error: false,
            // Not `silent`: ipykernel would not publish the printed result on IOPub.
            silent: false,
        };
        let mut h = kernel.client.execute(code, opts, None).await?;
        let mut run = InternalRun {
            stdout: String::new(),
            stderr: String::new(),
            reply: Value::Null,
        };
        let collect = async {
            let (mut replied, mut idle, mut barrier_passed) = (false, false, false);
            while !(replied && idle) {
                if idle && !replied && !barrier_passed {
                    // Idle without a reply (a SIGINT that landed before the code started):
                    // once a later shell request is answered, no reply can come any more.
                    kernel.client.shell_barrier().await?;
                    barrier_passed = true;
                }
                let ev = if barrier_passed {
                    match h.try_next() {
                        Some(ev) => ev,
                        None => {
                            run.reply = serde_json::json!({
                                "status": "error",
                                "ename": "NoReply",
                                "evalue": "the kernel went idle without replying (interrupted before the code started?)",
                                "traceback": [],
                            });
                            break;
                        }
                    }
                } else {
                    h.next().await
                };
                match ev {
                    KernelEvent::Message(m) => match m.msg_type.as_str() {
                        "stream" => {
                            let text = m.content.get("text").and_then(Value::as_str).unwrap_or("");
                            match m.content.get("name").and_then(Value::as_str) {
                                Some("stderr") => run.stderr.push_str(text),
                                _ => run.stdout.push_str(text),
                            }
                        }
                        "execute_reply" => {
                            run.reply = m.content;
                            replied = true;
                        }
                        _ => {
                            let state = m.execution_state();
                            idle |= state == Some("idle");
                            if let Some(st @ ("busy" | "idle")) = state {
                                self.kernel_state(
                                    &path.rel,
                                    &kernel.session_id,
                                    st,
                                    kernel.pid_opt(),
                                );
                            }
                        }
                    },
                    KernelEvent::Died(r) => {
                        return Err(EngineError::Kernel(jmcp_kernel::KernelError::Died {
                            stderr_tail: vec![r],
                        }))
                    }
                }
            }
            Ok(())
        };
        tokio::time::timeout(timeout, collect).await.map_err(|_| {
            EngineError::Timeout(format!(
                "the kernel of '{}' did not finish the server's request within {:.0} s \
                 (a cell may still be running); try again when it is idle",
                path.rel,
                timeout.as_secs_f64()
            ))
        })??;
        Ok(run)
    }
}
