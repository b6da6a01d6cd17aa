//! Engine operations on executions and kernels.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use jmcp_kernel::{find_kernelspec, KernelSpec};
use serde_json::{json, Value};

use super::session::{self, Job, NotebookSession, RunningKernel};
use super::{
    notebook_ops, Engine, EngineError, EngineResult, ExecutionView, KernelView, SubmitItem,
};
use crate::paths::RootedPath;
use crate::store::{self, NewExecution, Status};

impl Engine {
    /// The kernelspec a notebook runs with: `requested`, else the notebook's
    /// `metadata.kernelspec.name`, else the configured default. Errors list installed specs.
    pub fn kernelspec_for(
        &self,
        path: &RootedPath,
        requested: Option<&str>,
    ) -> EngineResult<KernelSpec> {
        let from_file = || -> Option<String> {
            let nb = notebook_ops::load(path).ok()?;
            nb.metadata
                .get("kernelspec")?
                .get("name")?
                .as_str()
                .map(str::to_string)
        };
        let name = requested
            .map(str::to_string)
            .or_else(from_file)
            .unwrap_or_else(|| self.config().default_kernel.clone());
        match find_kernelspec(&name) {
            // Many notebooks name the generic "python" kernel; it is what python3 serves.
            Err(e) if name == "python" => find_kernelspec("python3").map_err(|_| e.into()),
            other => Ok(other?),
        }
    }

    /// True when the notebook has a kernel that has not died.
    pub fn has_live_kernel(&self, path: &RootedPath) -> bool {
        self.existing_session(&path.rel)
            .and_then(|s| s.current_kernel())
            .is_some()
    }

    /// Queues executions for a notebook, durably, and returns their ids in order.
    /// The rows are committed before this returns and before any kernel sees the code.
    pub async fn submit(
        &self,
        path: &RootedPath,
        items: Vec<SubmitItem>,
        batch: bool,
        stop_on_error: bool,
    ) -> EngineResult<Vec<String>> {
        let batch_id = batch.then(|| uuid::Uuid::new_v4().to_string());
        let rows: Vec<NewExecution> = items
            .into_iter()
            .map(|i| NewExecution {
                id: uuid::Uuid::new_v4().to_string(),
                notebook: path.rel.clone(),
                cell_id: i.cell_id,
                code: i.code,
                batch_id: batch_id.clone(),
                stop_on_error,
                allow_error: i.allow_error,
            })
            .collect();
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        for id in &ids {
            self.live().insert(id);
        }
        if let Err(e) = self.store().accept(rows).await {
            for id in &ids {
                self.live().set_status(id, Status::Failed);
            }
            return Err(e.into());
        }
        let session = self.session(path);
        for id in &ids {
            // The worker lives as long as the session; a send can only fail during shutdown.
            if session.queue.send(Job::Run(id.clone())).is_err() {
                return Err(EngineError::ShuttingDown);
            }
        }
        Ok(ids)
    }

    /// The execution now (outputs so far while it runs).
    pub async fn execution(&self, id: &str) -> EngineResult<ExecutionView> {
        let owned = id.to_string();
        let rec = self
            .store()
            .call(move |c| store::executions::get(c, &owned))
            .await?
            .ok_or_else(|| EngineError::ExecutionNotFound { id: id.to_string() })?;
        let mut view = ExecutionView {
            record: rec,
            input_prompt: None,
        };
        if !view.record.status.is_terminal() {
            if let Some(live) = self.live().get(id) {
                if let Ok(p) = live.partial.lock() {
                    if !p.0.is_empty() {
                        view.record.outputs = p.0.clone();
                    }
                    view.record.execution_count = view.record.execution_count.or(p.1);
                }
                view.input_prompt = live.input_prompt.lock().ok().and_then(|p| p.clone());
            }
        }
        Ok(view)
    }

    /// Waits up to `wait` for the execution to reach a terminal state (signalled), then
    /// returns it as it is.
    pub async fn wait(&self, id: &str, wait: Duration) -> EngineResult<ExecutionView> {
        if let Some(live) = self.live().get(id) {
            let mut rx = live.status.subscribe();
            let _ = tokio::time::timeout(wait, rx.wait_for(|s| s.is_terminal())).await;
            let done = live.final_record.lock().ok().and_then(|f| f.clone());
            if let Some(record) = done {
                return Ok(ExecutionView {
                    record,
                    input_prompt: None,
                });
            }
        }
        self.execution(id).await
    }

    /// The prompt of an unanswered `input()` of a running execution, if any.
    pub fn live_input_prompt(&self, id: &str) -> Option<String> {
        self.live().get(id)?.input_prompt.lock().ok()?.clone()
    }

    /// Cancels: a pending execution is removed from the queue (`cancelled`); a running one is
    /// interrupted in the kernel (`interrupted`). Terminal executions are returned unchanged.
    pub async fn cancel(&self, id: &str) -> EngineResult<ExecutionView> {
        let view = self.execution(id).await?;
        match view.status() {
            Status::Pending => {
                let owned = id.to_string();
                let cancelled = self
                    .store()
                    .call(move |c| {
                        store::executions::cancel_pending(c, &owned, "cancelled on request")
                    })
                    .await?;
                if cancelled {
                    self.live().set_status(id, Status::Cancelled);
                    return self.execution(id).await;
                }
                // It started meanwhile: interrupt it.
                Box::pin(self.cancel(id)).await
            }
            Status::Running => {
                let session = self.existing_session(&view.record.notebook);
                let running = session.as_ref().and_then(|s| s.running());
                match (session, running) {
                    (Some(s), Some(r)) if r.id == id => {
                        r.interrupted.store(true, Ordering::SeqCst);
                        if let Some(k) = s.current_kernel() {
                            session::interrupt(&k).await?;
                        }
                        self.wait(id, Duration::from_secs(10)).await
                    }
                    _ => self.execution(id).await,
                }
            }
            _ => Ok(view),
        }
    }

    /// Makes sure the notebook has a live kernel; starts one if needed. The second value is a
    /// note for the agent when a previous kernel had died.
    pub(crate) async fn ensure_kernel(
        &self,
        session: &Arc<NotebookSession>,
        requested: Option<&str>,
    ) -> EngineResult<(Arc<RunningKernel>, Option<String>)> {
        let _lifecycle = session.lifecycle.lock().await;
        if let Some(k) = session.current_kernel() {
            return Ok((k, None));
        }
        // A kernel that just died may not have been cleared by its watcher yet: take its
        // reason now so the note is never lost to that race.
        let dead = session.kernel.lock().ok().and_then(|mut k| k.take());
        if let Some(dead) = dead.filter(|k| !k.stopping.load(Ordering::SeqCst)) {
            if let Ok(mut note) = session.death_note.lock() {
                if note.is_none() {
                    *note = Some(
                        dead.client
                            .dead_reason()
                            .unwrap_or_else(|| "the kernel process exited".into()),
                    );
                }
            }
        }
        let spec = self.kernelspec_for(&session.path, requested)?;
        let kernel = session::launch_kernel(self, session, &spec).await?;
        if let Ok(mut k) = session.kernel.lock() {
            *k = Some(kernel.clone());
        }
        let note = session
            .death_note
            .lock()
            .ok()
            .and_then(|mut n| n.take())
            .map(|why| {
                format!(
                    "The previous kernel of this notebook died ({}). A fresh kernel was started: \
                 variables and imports from before are gone; re-run the cells you need.",
                    why.lines().next().unwrap_or("")
                )
            });
        let note = match note {
            Some(n) => Some(
                match crate::checkpoint::restore_offer(self, &session.path.rel).await {
                    Some(offer) => format!("{n} {offer}"),
                    None => n,
                },
            ),
            None => None,
        };
        self.record_kernel_metadata(session, &kernel).await;
        Ok((kernel, note))
    }

    /// Writes `metadata.kernelspec` (if missing) and `metadata.language_info` into the
    /// notebook, as JupyterLab and nbclient do.
    async fn record_kernel_metadata(&self, session: &Arc<NotebookSession>, kernel: &RunningKernel) {
        let (path, lock) = (session.path.clone(), session.file_lock.clone());
        if !path.abs.exists() {
            return;
        }
        let spec = json!({
            "display_name": kernel.spec.display_name,
            "language": kernel.spec.language,
            "name": kernel.spec.name,
        });
        let language_info = kernel.kernel_info.get("language_info").cloned();
        let r = tokio::task::spawn_blocking(move || {
            notebook_ops::update(&path, &lock, |nb| {
                if !nb.metadata.contains_key("kernelspec") {
                    nb.metadata.insert("kernelspec".into(), spec);
                }
                if let Some(li) = language_info {
                    nb.metadata.insert("language_info".into(), li);
                }
                Ok(())
            })
        })
        .await;
        if let Ok(Err(e)) | Err(e) = r.map_err(|e| EngineError::InvalidArgument(e.to_string())) {
            tracing::warn!("could not record kernel metadata: {e}");
        }
    }

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
        let session = self.session(path);
        let kernel = session
            .current_kernel()
            .ok_or_else(|| EngineError::NoKernel {
                notebook: path.rel.clone(),
            })?;
        if let Some(r) = session.running() {
            r.interrupted.store(true, Ordering::SeqCst);
        }
        session::interrupt(&kernel).await?;
        if let Some(r) = session.running() {
            self.wait(&r.id, Duration::from_secs(10)).await?;
        }
        self.kernel_view(&session).await
    }

    /// Restarts the kernel: the running execution is `interrupted`, state is lost, queued
    /// executions run on the new kernel.
    pub async fn restart(&self, path: &RootedPath) -> EngineResult<KernelView> {
        let session = self.session(path);
        let spec = {
            let _l = session.lifecycle.lock().await;
            let old = session.kernel.lock().ok().and_then(|mut k| k.take());
            if let Some(r) = session.running() {
                r.interrupted.store(true, Ordering::SeqCst);
            }
            match old {
                Some(k) => {
                    session::stop_kernel(&k).await;
                    Some(k.spec.name.clone())
                }
                None => None,
            }
        };
        self.ensure_kernel(&session, spec.as_deref()).await?;
        self.kernel_view(&session).await
    }

    /// Shuts the kernel down; pending executions of the notebook are cancelled.
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
        }
        self.cancel_pending_of(&path.rel, "cancelled: the kernel was shut down")
            .await?;
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
        let queue_depth = self
            .store()
            .call(move |c| store::executions::pending_count(c, &nb))
            .await?;
        let kernel = session.kernel.lock().ok().and_then(|k| k.clone());
        Ok(match kernel {
            Some(k) => KernelView {
                notebook: session.path.rel.clone(),
                kernel_name: k.spec.name.clone(),
                pid: Some(k.pid),
                state: k.state(),
                queue_depth,
                started_at: Some(k.started_at.clone()),
            },
            None => KernelView {
                notebook: session.path.rel.clone(),
                kernel_name: String::new(),
                pid: None,
                state: "none".into(),
                queue_depth,
                started_at: None,
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
    pub async fn shutdown(&self, stop_kernels: bool) {
        if !stop_kernels {
            return;
        }
        let kernels: Vec<_> = self
            .all_sessions()
            .iter()
            .filter_map(|s| s.kernel.lock().ok().and_then(|mut k| k.take()))
            .collect();
        futures::future::join_all(kernels.iter().map(|k| session::stop_kernel(k))).await;
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
