//! Recovery after a server restart (SPEC §5): reattach to kernels that are still alive (PID
//! plus start time, connection file, kernel_info on the control channel), record the dead ones,
//! settle executions that were `running` when the previous process died, and resume `pending`
//! executions in their original order. No execution runs twice unless `--recover retry`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jmcp_kernel::launch::read_connection_file;
use jmcp_kernel::{find_kernelspec, process, ExecuteOptions, KernelClient, KernelEvent};
use jmcp_outputs::OutputAccumulator;
use serde_json::{json, Value};

use super::session::{
    self, done_query_code, Job, NotebookSession, Reattached, RunningExecution, RunningKernel,
    DONE_MARKER, HOOK_KEY,
};
use super::{Engine, EngineResult};
use crate::store::{self, ExecutionRecord, KernelSessionRecord, Status};

/// What to do with executions that were `running` when the server died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoverMode {
    /// Find out from a surviving kernel how they ended; otherwise mark them `interrupted`.
    Interrupt,
    /// Queue them again (they may run a second time).
    Retry,
}

/// What recovery did, for the log and `server_status`.
#[derive(Debug, Default, Clone)]
pub struct RecoveryReport {
    /// Notebooks whose kernel was reattached.
    pub reattached: Vec<String>,
    /// Notebooks whose kernel died while the server was down.
    pub dead: Vec<String>,
    /// Running executions followed on their surviving kernel.
    pub adopted: usize,
    /// Running executions marked interrupted.
    pub interrupted: usize,
    /// Running executions queued again (`--recover retry`).
    pub retried: usize,
    /// Pending executions queued again.
    pub resumed: usize,
}

const REATTACH_TIMEOUT: Duration = Duration::from_secs(5);

impl Engine {
    /// Runs recovery once, before serving. Reattaching happens concurrently for all kernels.
    pub async fn recover(&self, mode: RecoverMode) -> EngineResult<RecoveryReport> {
        let mut report = RecoveryReport::default();
        let open = self
            .store()
            .call(|c| store::sessions::open_sessions(c))
            .await?;
        // Warm pool kernels of the previous process belong to no notebook: stopped, never adopted.
        let (pooled, open): (Vec<_>, Vec<_>) = open
            .into_iter()
            .partition(|r| r.notebook == super::pool::POOL_NOTEBOOK);
        super::pool::reap_previous(self, pooled).await;
        // One kernel per notebook: the newest open session wins; older ones are ended.
        let mut latest: HashMap<String, KernelSessionRecord> = HashMap::new();
        for rec in open {
            if let Some(old) = latest.insert(rec.notebook.clone(), rec) {
                self.end_session(
                    &old.id,
                    "dead",
                    "superseded by a newer kernel of the same notebook",
                )
                .await?;
            }
        }
        if let Some(gateway) = &self.config().gateway {
            // Kernelspec names resolve against the gateway from the first call on.
            if let Err(e) = gateway.kernelspecs().await {
                tracing::warn!("{e}");
            }
        }
        let attempts = latest.into_values().map(|rec| async move {
            let result = match rec.remote {
                Some(_) => super::remote::reattach(self, &rec, REATTACH_TIMEOUT).await,
                None => reattach(&rec).await,
            };
            (rec, result)
        });
        for (rec, result) in futures::future::join_all(attempts).await {
            let Ok(path) = self.notebook_path(&rec.notebook) else {
                self.end_session(&rec.id, "dead", "its notebook is outside the current root")
                    .await?;
                continue;
            };
            let session = self.session(&path);
            match result {
                Ok(found) => {
                    session::adopt_kernel(self, &session, found);
                    report.reattached.push(rec.notebook.clone());
                }
                Err(why) => {
                    let reason = format!("the kernel died while the server was down ({why})");
                    self.end_session(&rec.id, "dead", &reason).await?;
                    if let Ok(mut note) = session.death_note.lock() {
                        *note = Some(reason);
                    }
                    report.dead.push(rec.notebook.clone());
                }
            }
        }

        let running = self
            .store()
            .call(|c| store::executions::in_order(c, Status::Running))
            .await?;
        for rec in running {
            self.settle_running(rec, mode, &mut report).await?;
        }
        self.stop_broken_batches().await?;
        let pending = self
            .store()
            .call(|c| store::executions::in_order(c, Status::Pending))
            .await?;
        for rec in pending {
            match self.notebook_path(&rec.notebook) {
                Ok(path) => {
                    self.live()
                        .insert(&rec.id, &rec.notebook, rec.cell_id.as_deref());
                    let _ = self.session(&path).send(Job::Run(rec.id.clone()));
                    report.resumed += 1;
                }
                Err(e) => {
                    super::worker::finish_without_kernel(
                        self,
                        &rec.id,
                        Status::Cancelled,
                        "RecoveryError",
                        &format!("not resumed: {e}"),
                    )
                    .await;
                }
            }
        }
        Ok(report)
    }

    /// A stop-on-error batch whose cell ended badly but whose rest is still pending (the
    /// previous process ended between recording that cell and cancelling the rest) is
    /// cancelled now, before pending executions resume: the rest must not run.
    async fn stop_broken_batches(&self) -> EngineResult<()> {
        let pending = self
            .store()
            .call(|c| store::executions::in_order(c, Status::Pending))
            .await?;
        let mut seen = std::collections::HashSet::new();
        for rec in pending {
            let Some(batch) = rec.batch_id.clone() else {
                continue;
            };
            if !seen.insert(batch.clone()) {
                continue;
            }
            let rows = self
                .store()
                .call(move |c| store::executions::by_batch(c, &batch))
                .await?;
            let stopper = rows.into_iter().find(|r| {
                r.seq < rec.seq
                    && r.stop_on_error
                    && match r.status {
                        Status::Failed => !r.allow_error,
                        Status::Interrupted => true,
                        _ => false,
                    }
            });
            if let Some(stopper) = stopper {
                super::worker::cancel_rest_of_batch(self, &stopper).await;
            }
        }
        Ok(())
    }

    async fn settle_running(
        &self,
        rec: ExecutionRecord,
        mode: RecoverMode,
        report: &mut RecoveryReport,
    ) -> EngineResult<()> {
        if mode == RecoverMode::Retry {
            let id = rec.id.clone();
            let requeued = self
                .store()
                .call(move |c| store::executions::requeue(c, &id, "queued again after a server restart (--recover retry); it may have run before"))
                .await?;
            if requeued {
                report.retried += 1;
            }
            return Ok(()); // picked up with the pending ones, in order
        }
        let path = self.notebook_path(&rec.notebook).ok();
        let session = path.as_ref().map(|p| self.session(p));
        let kernel = session.as_ref().and_then(|s| s.current_kernel());
        match (session, kernel) {
            (Some(session), Some(k)) if k.spec.is_ipykernel() && rec.msg_id.is_some() => {
                self.live()
                    .insert(&rec.id, &rec.notebook, rec.cell_id.as_deref());
                self.live().set_status(&rec.id, Status::Running);
                let _ = session.send(Job::Adopt(rec.id.clone()));
                report.adopted += 1;
            }
            _ => {
                let why = "the server stopped while this ran and its kernel did not survive; \
                           outputs received before that are kept";
                super::worker::finish_without_kernel(
                    self,
                    &rec.id,
                    Status::Interrupted,
                    "ServerRestart",
                    why,
                )
                .await;
                // As `adopt` does: a stop-on-error batch does not go on after a cell that did
                // not complete (its pending rest would otherwise run on a fresh kernel).
                if rec.stop_on_error && !rec.allow_error {
                    super::worker::cancel_rest_of_batch(self, &rec).await;
                }
                report.interrupted += 1;
            }
        }
        Ok(())
    }

    async fn end_session(&self, id: &str, state: &'static str, reason: &str) -> EngineResult<()> {
        let (id, reason) = (id.to_string(), reason.to_string());
        Ok(self
            .store()
            .call(move |c| store::sessions::end_session(c, &id, state, &reason))
            .await?)
    }
}

/// Confirms a recorded kernel is ours and alive, and connects to it.
async fn reattach(rec: &KernelSessionRecord) -> Result<Reattached, String> {
    let pid = rec.pid.ok_or("no PID was recorded")?;
    if !process::is_alive(pid, rec.pid_start_time) {
        return Err(if process::is_alive(pid, None) {
            format!("PID {pid} now belongs to another process")
        } else {
            format!("process {pid} is gone")
        });
    }
    let file = rec
        .connection_file
        .as_deref()
        .ok_or("no connection file was recorded")?;
    let info = read_connection_file(std::path::Path::new(file)).map_err(|e| e.to_string())?;
    let spec = find_kernelspec(&rec.kernel_name).map_err(|e| e.to_string())?;
    let client = KernelClient::connect(&info)
        .await
        .map_err(|e| e.to_string())?;
    Reattached::confirm(rec, spec, client, REATTACH_TIMEOUT, None).await
}

/// Follows an execution that was `running` when the previous server died, on its surviving
/// kernel: claims its `msg_id` (messages that arrived meanwhile were held as orphans), then asks
/// the kernel's completion hook how it ended. The question queues behind the execution on the
/// shell channel, so its answer comes after the execution finished.
pub async fn adopt(engine: &Engine, session: &Arc<NotebookSession>, id: &str) -> EngineResult<()> {
    let owned = id.to_string();
    let Some(rec) = engine
        .store()
        .call(move |c| store::executions::get(c, &owned))
        .await?
    else {
        return Ok(());
    };
    if rec.status != Status::Running {
        return Ok(());
    }
    let (Some(kernel), Some(msg_id)) = (session.current_kernel(), rec.msg_id.clone()) else {
        let why = "the server stopped while this ran and its kernel did not survive";
        super::worker::finish_without_kernel(engine, id, Status::Interrupted, "ServerRestart", why)
            .await;
        if rec.stop_on_error && !rec.allow_error {
            super::worker::cancel_rest_of_batch(engine, &rec).await;
        }
        return Ok(());
    };
    // First-class while it runs: cancel_execution and interrupt_kernel reach it, and the
    // server's limits apply (the cell's time counts from when it was first sent).
    let running = Arc::new(RunningExecution::new(id));
    // The kernel started this request before the restart: interrupts go through at once.
    running.gate.kernel_started();
    if let Ok(mut r) = session.running.lock() {
        *r = Some(running.clone());
    }
    let outcome = follow(engine, &kernel, &rec, &msg_id, &running).await;
    if let Ok(mut r) = session.running.lock() {
        *r = None;
    }
    let (acc, stdout, died) = outcome?;
    settle_adopted(engine, session, rec, msg_id, &running, acc, stdout, died).await
}

/// Collects the adopted request's messages and asks the completion hook how it ended.
/// Returns the outputs, the query's stdout, and why the kernel died if it did.
async fn follow(
    engine: &Engine,
    kernel: &RunningKernel,
    rec: &ExecutionRecord,
    msg_id: &str,
    running: &RunningExecution,
) -> EngineResult<(OutputAccumulator, String, Option<String>)> {
    let limits = engine.config().limits;
    let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
    let max_cell = limits.max_cell.map(|d| {
        let ran = rec
            .started_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .and_then(|t| {
                (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                    .to_std()
                    .ok()
            })
            .unwrap_or_default();
        tokio::time::Instant::now() + d.saturating_sub(ran)
    });
    let (mut limit_hit, mut input_deadline) = (false, None::<tokio::time::Instant>);
    let mut adopted = kernel.client.claim(msg_id);
    let opts = ExecuteOptions {
        store_history: false,
        allow_stdin: false,
        stop_on_error: false,
        silent: false,
    };
    let mut query = kernel
        .client
        .execute(&done_query_code(&[msg_id.to_string()]), opts, None)
        .await?;
    let mut acc = OutputAccumulator::new();
    let (mut stdout, mut replied, mut idle, mut died) = (String::new(), false, false, None);
    while !(replied && idle) {
        tokio::select! {
            ev = adopted.next() => match ev {
                KernelEvent::Message(m) if m.msg_type == "input_request" => {
                    if let Ok(mut r) = running.input_request.lock() {
                        *r = Some(m.header.clone());
                    }
                    input_deadline = Some(tokio::time::Instant::now() + limits.input_timeout);
                }
                KernelEvent::Message(m) => {
                    super::worker::publish_output(engine, rec, &m.msg_type, &m.content);
                    acc.apply(&m.msg_type, &m.content);
                }
                KernelEvent::Died(r) => { died = Some(r); break; }
            },
            _ = tokio::time::sleep_until(max_cell.unwrap_or(far)), if max_cell.is_some() && !limit_hit => {
                limit_hit = true;
                let secs = limits.max_cell.map(|d| d.as_secs_f64()).unwrap_or_default();
                super::worker::server_interrupt(kernel, running, format!(
                    "interrupted by the server after {secs:.0} s (--max-cell-seconds)"
                )).await;
            }
            _ = tokio::time::sleep_until(input_deadline.unwrap_or(far)), if input_deadline.is_some() => {
                input_deadline = None;
                let secs = limits.input_timeout.as_secs_f64();
                super::worker::server_interrupt(kernel, running, format!(
                    "interrupted by the server: input() got no answer within {secs:.0} s (answer prompts with send_input)"
                )).await;
            }
            ev = query.next() => match ev {
                KernelEvent::Message(m) => match m.msg_type.as_str() {
                    "stream" => stdout.push_str(m.content.get("text").and_then(Value::as_str).unwrap_or("")),
                    "execute_reply" => replied = true,
                    _ => idle |= m.execution_state() == Some("idle"),
                },
                KernelEvent::Died(r) => { died = Some(r); break; }
            },
        }
    }
    // The query's IOPub idle came after every IOPub message of the adopted request (one socket,
    // in order, routed by one task), so whatever belongs to it is already queued.
    while let Some(KernelEvent::Message(m)) = adopted.try_next() {
        acc.apply(&m.msg_type, &m.content);
    }
    Ok((acc, stdout, died))
}

/// Records how an adopted execution ended (from the hook's answer), writes its outputs into
/// the cell, and stops the rest of its batch if it did not complete.
#[allow(clippy::too_many_arguments)]
async fn settle_adopted(
    engine: &Engine,
    session: &Arc<NotebookSession>,
    rec: ExecutionRecord,
    msg_id: String,
    running: &RunningExecution,
    acc: OutputAccumulator,
    stdout: String,
    died: Option<String>,
) -> EngineResult<()> {
    let id = rec.id.as_str();
    let answer = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(DONE_MARKER))
        .and_then(|j| serde_json::from_str::<Value>(j).ok());
    // The hook is proven installed only if the kernel said so; an old kernel, a failed
    // install or an unreadable answer leave the outcome unknown.
    let hook_installed = answer
        .as_ref()
        .and_then(|v| v.get(HOOK_KEY))
        .and_then(Value::as_bool)
        == Some(true);
    let interrupted = running
        .interrupted
        .load(std::sync::atomic::Ordering::SeqCst);
    let reason = running.interrupt_reason.lock().ok().and_then(|r| r.clone());
    let record = answer
        .as_ref()
        .and_then(|v| v.get(&msg_id).cloned())
        .filter(|v| !v.is_null());
    let finished = acc.finish();
    let mut done = rec.clone();
    done.outputs.extend(finished.outputs);
    done.execution_count = done.execution_count.or(finished.execution_count);
    done.finished_at = Some(store::now());
    let (status, error, note) = match (&died, &record) {
        (Some(r), _) => (
            Status::Interrupted,
            Some(json!({"ename": "DeadKernelError", "evalue": r, "traceback": []})),
            "the server restarted while this ran, then the kernel died".to_string(),
        ),
        (None, Some(r)) if r.get("ok").and_then(Value::as_bool) == Some(true) => (
            Status::Completed,
            None,
            "finished in the kernel while the server restarted; outputs produced during the restart may be missing".to_string(),
        ),
        (None, Some(r)) if interrupted => (
            Status::Interrupted,
            Some(json!({
                "ename": r.get("ename").cloned().unwrap_or(json!("")),
                "evalue": r.get("evalue").cloned().unwrap_or(json!("")),
                "traceback": [],
            })),
            reason.clone().unwrap_or_else(|| "interrupted on request (it had been adopted after a server restart)".to_string()),
        ),
        (None, Some(r)) => (
            Status::Failed,
            Some(json!({
                "ename": r.get("ename").cloned().unwrap_or(json!("")),
                "evalue": r.get("evalue").cloned().unwrap_or(json!("")),
                "traceback": [],
            })),
            "raised in the kernel while the server restarted".to_string(),
        ),
        (None, None) if hook_installed => (
            Status::Interrupted,
            None,
            "the server stopped before this reached the kernel; it was not run".to_string(),
        ),
        (None, None) => (
            Status::Interrupted,
            None,
            "outcome unknown: the server stopped while this was sent, and the kernel has no \
             completion record to tell whether it ran (its completion hook is not installed); \
             check the kernel's state before running it again"
                .to_string(),
        ),
    };
    if let Some(count) = record
        .as_ref()
        .and_then(|r| r.get("count"))
        .and_then(Value::as_i64)
    {
        done.execution_count = Some(count);
    }
    done.status = status;
    done.error = error;
    done.note = Some(note);
    if let Some(cell) = rec.cell_id.clone() {
        if let Err(e) = super::worker::write_cell_outputs(session, &cell, &done).await {
            tracing::warn!(execution = %id, "could not write recovered outputs: {e}");
        }
    }
    super::unrecorded::record_final(engine, done.clone()).await;
    if done.status != Status::Completed && rec.stop_on_error && !rec.allow_error {
        super::worker::cancel_rest_of_batch(engine, &rec).await;
    }
    Ok(())
}
