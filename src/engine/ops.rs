//! Engine operations on executions: kernelspec choice, submit, wait, cancel, and making sure a
//! notebook has a live kernel.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use jmcp_kernel::{find_kernelspec, KernelSpec};
use serde_json::json;

use super::session::{self, Job, NotebookSession, RunningKernel};
use super::{notebook_ops, Engine, EngineError, EngineResult, ExecutionView, SubmitItem};
use crate::paths::RootedPath;
use crate::store::{self, NewExecution, StartedOn, Status};

/// How long reading an execution this process knows in memory may wait for `state.db`
/// before it is answered from memory (SPEC §8: within 1 s while storage hangs).
pub const LIVE_READ_BOUND: Duration = Duration::from_millis(400);

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
        if let Some(gateway) = &self.config().gateway {
            return match gateway.cached_kernelspec(&name) {
                Err(e) if name == "python" => {
                    gateway.cached_kernelspec("python3").map_err(|_| e.into())
                }
                other => Ok(other?),
            };
        }
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
        self.submit_as(path, items, batch, stop_on_error, None)
            .await
    }

    /// [`Engine::submit`] recording who asked (`requested_by`: MCP session and client name),
    /// as the web view's timeline shows it.
    pub async fn submit_as(
        &self,
        path: &RootedPath,
        items: Vec<SubmitItem>,
        batch: bool,
        stop_on_error: bool,
        requested_by: Option<String>,
    ) -> EngineResult<Vec<String>> {
        let batch_id = batch.then(|| uuid::Uuid::new_v4().to_string());
        let mut rows: Vec<NewExecution> = items
            .into_iter()
            .map(|i| NewExecution {
                id: uuid::Uuid::new_v4().to_string(),
                notebook: path.rel.clone(),
                cell_id: i.cell_id,
                code: i.code,
                batch_id: batch_id.clone(),
                stop_on_error,
                allow_error: i.allow_error,
                requested_by: requested_by.clone(),
                started: None,
            })
            .collect();
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        for r in &rows {
            self.live().insert(&r.id, &r.notebook, r.cell_id.as_deref());
        }
        let session = self.session(path);
        // An idle queue with a live kernel: accept and start in one commit (issue 8 item 12).
        let fast = match rows.as_mut_slice() {
            [row] if !batch => self.claim_idle_start(&session, row),
            _ => None,
        };
        if let Err(e) = self.store().accept(rows).await {
            if fast.is_some() {
                if let Ok(mut r) = session.running.lock() {
                    *r = None;
                }
                session.jobs.done();
            }
            for id in &ids {
                self.live().set_status(id, Status::Failed);
            }
            return Err(e.into());
        }
        // The worker lives as long as the session; a send can only fail during shutdown.
        // Rows accepted but not queued are cancelled, never left to run later.
        let unqueued = match fast {
            Some(job) => {
                self.live().set_status(&ids[0], Status::Running);
                // Counted by the claim.
                let failed = session.queue.send(job).is_err();
                if failed {
                    session.jobs.done();
                    if let Ok(mut r) = session.running.lock() {
                        *r = None;
                    }
                }
                failed.then_some(0)
            }
            None => ids
                .iter()
                .position(|id| session.send(Job::Run(id.clone())).is_err()),
        };
        if let Some(i) = unqueued {
            for id in &ids[i..] {
                super::worker::finish_without_kernel(
                    self,
                    id,
                    Status::Cancelled,
                    "ShuttingDown",
                    "not run: the server was shutting down when it was accepted",
                )
                .await;
            }
            return Err(EngineError::ShuttingDown);
        }
        Ok(ids)
    }

    /// Takes the notebook's idle queue for `row` when its kernel is live and nothing else is
    /// queued, running, held or waiting for an interrupt: marks `row` as accepted `running`
    /// on that kernel and publishes its [`session::RunningExecution`] (so an interrupt or a
    /// cancel arriving before the worker sends it finds it). Returns the job to send once the
    /// row is committed, or `None` for the ordinary path (`pending`, then marked `running`).
    fn claim_idle_start(
        &self,
        session: &Arc<NotebookSession>,
        row: &mut NewExecution,
    ) -> Option<Job> {
        if self.queued_held() {
            return None;
        }
        let interrupt_waits = session.interrupt_next.lock().map_or(true, |n| n.is_some());
        let kernel = session.current_kernel()?;
        if interrupt_waits || kernel.stopping.load(Ordering::SeqCst) || !session.jobs.claim_idle() {
            return None;
        }
        let published = match session.running.lock() {
            Ok(mut r) if r.is_none() => {
                *r = Some(Arc::new(session::RunningExecution::new(&row.id)));
                true
            }
            _ => false,
        };
        if !published {
            session.jobs.done();
            return None;
        }
        let msg_id = uuid::Uuid::new_v4().to_string();
        row.started = Some(StartedOn {
            kernel_session: kernel.session_id.clone(),
            msg_id: msg_id.clone(),
        });
        Some(Job::Started {
            id: row.id.clone(),
            kernel_session: kernel.session_id.clone(),
            msg_id,
        })
    }

    /// The execution now (outputs so far while it runs).
    ///
    /// Read from `state.db`; for an execution of this process whose row cannot be read within
    /// [`LIVE_READ_BOUND`], from memory (with a note naming the store problem).
    pub async fn execution(&self, id: &str) -> EngineResult<ExecutionView> {
        let owned = id.to_string();
        let live = self.live().get(id);
        let read = self
            .store()
            .call(move |c| store::executions::get(c, &owned));
        // An execution of this process is known in memory: its answer never waits on storage
        // longer than LIVE_READ_BOUND (SPEC §8: get_execution of a running one answers).
        let stored = match &live {
            Some(_) => match tokio::time::timeout(LIVE_READ_BOUND, read).await {
                Ok(r) => r,
                Err(_) => Err(store::StoreError::Task(format!(
                    "the state database did not answer within {} ms",
                    LIVE_READ_BOUND.as_millis()
                ))),
            },
            None => read.await,
        };
        let stored = match (stored, &live) {
            (Err(e), Some(l)) if self.unrecorded().lookup(id).is_none() => {
                Ok(Some(super::unrecorded::from_memory(id, l, &e)))
            }
            (other, _) => other,
        };
        // An end the store refused is known here first (see unrecorded.rs).
        let rec = match (stored, self.unrecorded().lookup(id)) {
            (Ok(Some(r)), _) if r.status.is_terminal() => r,
            (_, Some(done)) => done,
            (Ok(rec), None) => {
                rec.ok_or_else(|| EngineError::ExecutionNotFound { id: id.to_string() })?
            }
            (Err(e), None) => return Err(e.into()),
        };
        let mut view = ExecutionView {
            record: rec,
            input_prompt: None,
        };
        if !view.record.status.is_terminal() {
            if let Some(live) = self.live().get(id) {
                if let Ok(p) = live.partial.lock() {
                    if !p.0.is_empty() {
                        view.record.outputs = p.0.as_ref().clone();
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
        self.cancel_by(id, None).await
    }

    /// [`Engine::cancel`] on behalf of `who` (e.g. "the web view"): the execution's note
    /// says who cancelled or interrupted it, so the agent's next `get_execution` tells.
    pub async fn cancel_by(&self, id: &str, who: Option<&str>) -> EngineResult<ExecutionView> {
        let view = self.execution(id).await?;
        match view.status() {
            Status::Pending => {
                let owned = id.to_string();
                let note = match who {
                    Some(w) => format!("cancelled from {w}"),
                    None => "cancelled on request".to_string(),
                };
                let cancelled = self
                    .store()
                    .call(move |c| store::executions::cancel_pending(c, &owned, &note))
                    .await?;
                if cancelled {
                    self.live().set_status(id, Status::Cancelled);
                    return self.execution(id).await;
                }
                // It started meanwhile: interrupt it.
                Box::pin(self.cancel_by(id, who)).await
            }
            Status::Running => {
                let session = self.existing_session(&view.record.notebook);
                let running = session.as_ref().and_then(|s| s.running());
                match (session, running) {
                    (Some(s), Some(r)) if r.id == id => {
                        if let Some(w) = who {
                            if let Ok(mut reason) = r.interrupt_reason.lock() {
                                *reason = Some(format!("interrupted from {w}"));
                            }
                        }
                        r.interrupted.store(true, Ordering::SeqCst);
                        super::testhooks::point("cancel_marked").await;
                        if let Some(k) = s.current_kernel().filter(|_| r.gate.request()) {
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
        self.ensure_kernel_for(session, requested, &|| true)
            .await
            .map(|k| k.expect("always wanted"))
    }

    /// [`Engine::ensure_kernel`] for a worker: `wanted` is checked under the lifecycle lock
    /// before a kernel is started, so an execution cancelled meanwhile (by `shutdown_kernel`)
    /// does not start a fresh kernel. `None` when it was no longer wanted.
    pub(crate) async fn ensure_kernel_for(
        &self,
        session: &Arc<NotebookSession>,
        requested: Option<&str>,
        wanted: &(dyn Fn() -> bool + Sync),
    ) -> EngineResult<Option<(Arc<RunningKernel>, Option<String>)>> {
        let _lifecycle = session.lifecycle.lock().await;
        super::testhooks::point("kernel_lifecycle_taken").await;
        if let Some(k) = session.current_kernel() {
            return Ok(Some((k, None)));
        }
        if !wanted() {
            return Ok(None);
        }
        self.start_kernel_locked(session, requested).await.map(Some)
    }

    /// Starts a kernel for the session; the caller holds `session.lifecycle`.
    pub(crate) async fn start_kernel_locked(
        &self,
        session: &Arc<NotebookSession>,
        requested: Option<&str>,
    ) -> EngineResult<(Arc<RunningKernel>, Option<String>)> {
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
        // Fresh kernelspecs for the lookup below (and a clear error when the gateway is down).
        self.refresh_gateway_kernelspecs().await?;
        let spec = match requested {
            Some(_) => self.kernelspec_for(&session.path, requested)?,
            None => {
                // Reads the notebook's metadata: bounded, the root may not answer (SPEC §8).
                let (me, path) = (self.clone(), session.path.clone());
                notebook_ops::blocking_io(
                    &session.path.abs,
                    "reading the notebook's kernelspec",
                    move || me.kernelspec_for(&path, None),
                )
                .await?
            }
        };
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
                    "The previous kernel of this notebook is gone: {}. A fresh kernel was started: \
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

    /// For a run with nothing to execute (only markdown, raw or empty cells): makes sure the
    /// notebook has a kernel (starting one from its kernelspec if needed) and writes its
    /// `metadata.kernelspec` (if missing) and a fresh `metadata.language_info`, as nbclient
    /// does for every notebook it executes. Errors: the kernelspec is not installed, the
    /// kernel cannot start.
    pub async fn record_kernel_info(
        &self,
        path: &crate::paths::RootedPath,
        requested: Option<&str>,
    ) -> EngineResult<()> {
        let session = self.session(path);
        let (kernel, _) = self.ensure_kernel(&session, requested).await?;
        self.record_kernel_metadata(&session, &kernel).await;
        Ok(())
    }

    /// Writes `metadata.kernelspec` (if missing or incomplete) and `metadata.language_info`
    /// into the notebook, as JupyterLab and nbclient do.
    async fn record_kernel_metadata(&self, session: &Arc<NotebookSession>, kernel: &RunningKernel) {
        let (path, lock) = (session.path.clone(), session.file_lock.clone());
        let abs = path.abs.clone();
        let spec = json!({
            "display_name": kernel.spec.display_name,
            "language": kernel.spec.language,
            "name": kernel.spec.name,
        });
        let language_info = kernel.kernel_info.get("language_info").cloned();
        let r = notebook_ops::blocking_io(
            &abs.clone(),
            "recording the kernel in the notebook",
            move || {
                if !abs.exists() {
                    return Ok(((), vec![]));
                }
                notebook_ops::update(&path, &lock, |nb| {
                    complete_kernelspec(&mut nb.metadata, spec);
                    if let Some(li) = language_info {
                        nb.metadata.insert("language_info".into(), li);
                    }
                    Ok(())
                })
            },
        )
        .await;
        if let Err(e) = r {
            tracing::warn!("could not record kernel metadata: {e}");
        }
    }
}

/// Puts `spec` (`{display_name, language, name}` of the kernel that ran) into
/// `metadata.kernelspec` when there is none, and fills in the fields the nbformat v4 schema
/// requires (`name`, `display_name`: strings) when the notebook's own lacks them (e.g. a
/// `{"language": "python"}` written by another tool, which nbformat.validate refuses). Fields
/// the notebook already has are kept.
fn complete_kernelspec(
    metadata: &mut serde_json::Map<String, serde_json::Value>,
    spec: serde_json::Value,
) {
    let serde_json::Value::Object(spec) = spec else {
        return;
    };
    match metadata.get_mut("kernelspec") {
        Some(serde_json::Value::Object(existing)) => {
            for key in ["name", "display_name"] {
                if !existing.get(key).is_some_and(serde_json::Value::is_string) {
                    if let Some(v) = spec.get(key) {
                        existing.insert(key.into(), v.clone());
                    }
                }
            }
        }
        _ => {
            metadata.insert("kernelspec".into(), serde_json::Value::Object(spec));
        }
    }
}

#[cfg(test)]
mod kernelspec_tests {
    use serde_json::json;

    #[test]
    fn an_incomplete_kernelspec_is_completed_and_a_full_one_kept() {
        let spec = json!({"display_name": "Python 3", "language": "python", "name": "python3"});
        let mut m = json!({"kernelspec": {"language": "python"}})
            .as_object()
            .unwrap()
            .clone();
        super::complete_kernelspec(&mut m, spec.clone());
        assert_eq!(m["kernelspec"], spec);
        let own = json!({"display_name": "Mine", "language": "python", "name": "other", "x": 1});
        let mut m = json!({"kernelspec": own.clone()})
            .as_object()
            .unwrap()
            .clone();
        super::complete_kernelspec(&mut m, spec.clone());
        assert_eq!(m["kernelspec"], own);
        let mut m = serde_json::Map::new();
        super::complete_kernelspec(&mut m, spec.clone());
        assert_eq!(m["kernelspec"], spec);
    }
}
