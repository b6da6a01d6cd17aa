//! Engine operations on kernels: start, interrupt, restart, shut down, list, answer
//! `input()`, list variables, and stop everything at exit.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::session::{self, NotebookSession};
use super::{Engine, EngineError, EngineResult, KernelView};
use crate::paths::RootedPath;
use crate::store::{self, Status};

impl Engine {
    /// Starts the notebook's kernel now (it also starts on first execution).
    pub async fn start_kernel(
        &self,
        path: &RootedPath,
        kernel_name: Option<&str>,
    ) -> EngineResult<KernelView> {
        let session = self.session(path);
        self.ensure_kernel(&session, kernel_name).await?;
        self.kernel_view(&session).await
    }

    /// Interrupts the running execution of the notebook (it becomes `interrupted`; the rest of
    /// its `run_all_cells` batch is cancelled when it had `stop_on_error`).
    pub async fn interrupt(&self, path: &RootedPath) -> EngineResult<KernelView> {
        self.interrupt_by(path, None).await
    }

    /// [`Engine::interrupt`] on behalf of `who` (e.g. "the web view"): the interrupted
    /// execution's note says so (the agent's next `get_execution` tells who stopped it).
    pub async fn interrupt_by(
        &self,
        path: &RootedPath,
        who: Option<&str>,
    ) -> EngineResult<KernelView> {
        let session = self.session(path);
        let mark = |r: &session::RunningExecution| {
            if let Some(w) = who {
                if let Ok(mut reason) = r.interrupt_reason.lock() {
                    *reason = Some(format!("interrupted from {w}"));
                }
            }
        };
        let kernel = session
            .current_kernel()
            .ok_or_else(|| EngineError::NoKernel {
                notebook: path.rel.clone(),
            })?;
        // An interrupt reaches the kernel only once it has started the execution's request
        // (ipykernel loses a SIGINT that lands earlier); one that comes before is remembered.
        let target = match session.running() {
            Some(r) => {
                mark(&r);
                r.interrupted.store(true, Ordering::SeqCst);
                if r.gate.request() {
                    session::interrupt(&kernel).await?;
                }
                Some(r.id.clone())
            }
            None => {
                let next = self.interrupt_next_pending(&session).await?;
                // The worker takes a job, publishes it as `running`, then marks its row: if
                // it took one meanwhile, that one is the target.
                match (session.running(), next) {
                    (Some(r), _) => {
                        if let Ok(mut n) = session.interrupt_next.lock() {
                            if n.as_deref() != Some(r.id.as_str()) {
                                *n = None;
                            }
                        }
                        mark(&r);
                        r.interrupted.store(true, Ordering::SeqCst);
                        if r.gate.request() {
                            session::interrupt(&kernel).await?;
                        }
                        Some(r.id.clone())
                    }
                    (None, Some(id)) => Some(id),
                    (None, None) => {
                        session::interrupt(&kernel).await?;
                        None
                    }
                }
            }
        };
        if let Some(id) = target {
            super::interrupts::resend_until_ended(self, &session, &kernel, &id).await?;
        }
        self.kernel_view(&session).await
    }

    /// Restarts the kernel: the running execution is `interrupted`, state is lost, queued
    /// executions run on the new kernel. The lifecycle lock is held from the stop to the new
    /// start, so the worker cannot start a kernel of its own choosing in between.
    pub async fn restart(&self, path: &RootedPath) -> EngineResult<KernelView> {
        self.restart_by(path, None).await
    }

    /// [`Engine::restart`] on behalf of `who` (e.g. "the web view"): the execution it stops
    /// says so in its note.
    pub async fn restart_by(
        &self,
        path: &RootedPath,
        who: Option<&str>,
    ) -> EngineResult<KernelView> {
        let session = self.session(path);
        {
            let _l = session.lifecycle.lock().await;
            let old = session.kernel.lock().ok().and_then(|mut k| k.take());
            if let Some(r) = session.running() {
                if let Some(w) = who {
                    if let Ok(mut reason) = r.interrupt_reason.lock() {
                        *reason = Some(format!("the kernel was restarted from {w}"));
                    }
                }
                r.interrupted.store(true, Ordering::SeqCst);
            }
            let spec = match old {
                Some(k) => {
                    self.kernel_state(&path.rel, &k.session_id, "restarting", k.pid_opt());
                    session::stop_kernel(&k).await;
                    Some(k.spec.name.clone())
                }
                None => None,
            };
            super::testhooks::point("restart_stopped").await;
            if session.current_kernel().is_none() {
                self.start_kernel_locked(&session, spec.as_deref()).await?;
            }
        }
        self.kernel_view(&session).await
    }

    /// Shuts the kernel down; pending executions of the notebook are cancelled. Both happen
    /// under the lifecycle lock: a worker waiting for the lock to start a kernel for its next
    /// execution finds that execution cancelled and starts nothing.
    pub async fn shutdown_kernel(&self, path: &RootedPath) -> EngineResult<KernelView> {
        let session = self.session(path);
        {
            let _l = session.lifecycle.lock().await;
            let old = session.kernel.lock().ok().and_then(|mut k| k.take());
            let Some(k) = old else {
                return Err(EngineError::NoKernel {
                    notebook: path.rel.clone(),
                });
            };
            if let Some(r) = session.running() {
                r.interrupted.store(true, Ordering::SeqCst);
            }
            session::stop_kernel(&k).await;
            self.kernel_state(&path.rel, &k.session_id, "shutdown", k.pid_opt());
            super::testhooks::point("shutdown_stopped").await;
            self.cancel_pending_of(&path.rel, "cancelled: the kernel was shut down")
                .await?;
        }
        self.kernel_view(&session).await
    }

    async fn cancel_pending_of(&self, notebook: &str, note: &'static str) -> EngineResult<()> {
        let nb = notebook.to_string();
        let pending = self
            .store()
            .call(move |c| store::executions::list(c, Some(&nb), Some(Status::Pending), 100_000))
            .await?;
        for rec in pending {
            let id = rec.id.clone();
            if self
                .store()
                .call(move |c| store::executions::cancel_pending(c, &id, note))
                .await?
            {
                self.live().set_status(&rec.id, Status::Cancelled);
            }
        }
        Ok(())
    }

    /// Every notebook with a kernel session in this server.
    pub async fn list_kernels(&self) -> EngineResult<Vec<KernelView>> {
        let mut out = Vec::new();
        for s in self.all_sessions() {
            let has_kernel = s.kernel.lock().map(|k| k.is_some()).unwrap_or(false);
            if has_kernel {
                out.push(self.kernel_view(&s).await?);
            }
        }
        out.sort_by(|a, b| a.notebook.cmp(&b.notebook));
        Ok(out)
    }

    async fn kernel_view(&self, session: &Arc<NotebookSession>) -> EngineResult<KernelView> {
        let nb = session.path.rel.clone();
        // From state.db; from memory when it does not answer at once (SPEC §8: list_kernels
        // needs no storage).
        let counted = self
            .store()
            .call(move |c| store::executions::pending_count(c, &nb));
        let queue_depth = match tokio::time::timeout(super::ops::LIVE_READ_BOUND, counted).await {
            Ok(Ok(n)) => n,
            _ => self.live().pending_of(&session.path.rel) as i64,
        };
        let kernel = session.kernel.lock().ok().and_then(|k| k.clone());
        Ok(match kernel {
            Some(k) => KernelView {
                notebook: session.path.rel.clone(),
                kernel_name: k.spec.name.clone(),
                pid: k.pid_opt(),
                state: k.state(),
                queue_depth,
                started_at: Some(k.started_at.clone()),
                location: k.location(),
                memory_bytes: self.memory_watch().resident(k.pid),
                idle_seconds: self
                    .kernel_states()
                    .idle_for(&k.session_id)
                    .map(|d| (d.as_secs_f64() * 10.0).round() / 10.0),
            },
            None => KernelView {
                notebook: session.path.rel.clone(),
                kernel_name: String::new(),
                pid: None,
                state: "none".into(),
                queue_depth,
                started_at: None,
                location: None,
                memory_bytes: None,
                idle_seconds: None,
            },
        })
    }

    /// Answers the pending `input()` prompt of the notebook's running execution.
    pub async fn send_input(&self, path: &RootedPath, text: &str) -> EngineResult<()> {
        let session = self.session(path);
        let running = session.running().ok_or_else(|| {
            EngineError::InvalidArgument(format!("nothing is running in '{}'", path.rel))
        })?;
        let header = running
            .input_request
            .lock()
            .ok()
            .and_then(|mut h| h.take())
            .ok_or_else(|| {
                EngineError::InvalidArgument(format!(
                    "the running cell of '{}' is not waiting for input",
                    path.rel
                ))
            })?;
        let kernel = session
            .current_kernel()
            .ok_or_else(|| EngineError::NoKernel {
                notebook: path.rel.clone(),
            })?;
        kernel.client.input_reply(&header, text).await?;
        if let Some(live) = self.live().get(&running.id) {
            if let Ok(mut p) = live.input_prompt.lock() {
                *p = None;
            }
        }
        Ok(())
    }

    /// User variables of the notebook's kernel: name, type, shape/len, size in bytes.
    /// Runs introspection code with [`Engine::run_internal`] (not recorded as an execution).
    pub async fn list_variables(
        &self,
        path: &RootedPath,
        timeout: Duration,
    ) -> EngineResult<Vec<Value>> {
        let run = self.run_internal(path, VARIABLES_CODE, timeout).await?;
        let Some(line) = run
            .stdout
            .lines()
            .rev()
            .find(|l| l.starts_with(VARIABLES_MARKER))
        else {
            return Err(EngineError::InvalidArgument(format!(
                "this kernel cannot list variables (only IPython kernels can): {}",
                run.error_summary().unwrap_or_else(|| "no answer".into())
            )));
        };
        let json: Value = serde_json::from_str(&line[VARIABLES_MARKER.len()..])
            .map_err(|e| EngineError::InvalidArgument(format!("unreadable variable list: {e}")))?;
        Ok(json.as_array().cloned().unwrap_or_default())
    }

    /// Stops accepting work; with `stop_kernels`, shuts every kernel down.
    /// Kernels of the warm pool belong to no notebook and are stopped in any case.
    pub async fn shutdown(&self, stop_kernels: bool) {
        super::pool::drain(self).await;
        if !stop_kernels {
            return;
        }
        let kernels: Vec<_> = self
            .all_sessions()
            .iter()
            .filter_map(|s| {
                let k = s.kernel.lock().ok().and_then(|mut k| k.take())?;
                Some((s.path.rel.clone(), k))
            })
            .collect();
        futures::future::join_all(kernels.iter().map(|(_, k)| session::stop_kernel(k))).await;
        for (nb, k) in &kernels {
            self.kernel_state(nb, &k.session_id, "shutdown", k.pid_opt());
        }
        let kernels: Vec<_> = kernels.into_iter().map(|(_, k)| k).collect();
        // Record the stop now: the process exits before the kernels' watchers would, and the
        // next start must not report these kernels as having died.
        let ids: Vec<String> = kernels.iter().map(|k| k.session_id.clone()).collect();
        let _ = self
            .store()
            .call(move |c| {
                for id in &ids {
                    store::sessions::end_session(
                        c,
                        id,
                        "shutdown",
                        "stopped when the server exited (--stop-kernels-on-exit)",
                    )?;
                }
                Ok(())
            })
            .await;
    }
}

const VARIABLES_MARKER: &str = "__JMCP_VARIABLES__";

/// Introspection code for `list_variables`; prints one marked JSON line, defines nothing.
const VARIABLES_CODE: &str = r#"
def __jmcp_list_variables():
    import json, sys, types
    ip = get_ipython()
    hidden = getattr(ip, 'user_ns_hidden', {})
    out = []
    for name, value in list(ip.user_ns.items()):
        if name.startswith('_') or name in hidden or isinstance(value, types.ModuleType):
            continue
        if name in ('In', 'Out', 'exit', 'quit', 'get_ipython'):
            continue
        entry = {'name': name, 'type': type(value).__module__ + '.' + type(value).__qualname__ if type(value).__module__ not in ('builtins',) else type(value).__qualname__}
        shape = getattr(value, 'shape', None)
        if isinstance(shape, tuple):
            entry['shape'] = [int(s) if isinstance(s, int) else str(s) for s in shape]
        try:
            entry['len'] = len(value)
        except Exception:
            pass
        try:
            nbytes = getattr(value, 'nbytes', None)
            if isinstance(nbytes, int):
                entry['size_bytes'] = nbytes
            elif hasattr(value, 'memory_usage') and callable(value.memory_usage):
                entry['size_bytes'] = int(value.memory_usage(deep=True).sum())
            else:
                entry['size_bytes'] = sys.getsizeof(value)
        except Exception:
            pass
        out.append(entry)
    out.sort(key=lambda e: e['name'])
    print('__JMCP_VARIABLES__' + json.dumps(out))
__jmcp_list_variables()
del __jmcp_list_variables
"#;
