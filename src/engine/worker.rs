//! The per-notebook worker: takes execution ids in order, makes sure a kernel is running, sends
//! each `execute_request`, builds the cell's outputs from its IOPub messages (nbclient
//! semantics), records progress and the final state in the store, and writes the outputs into
//! the notebook. Waiters are woken through the live registry.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jmcp_kernel::{ExecuteOptions, KernelEvent};
use jmcp_outputs::{Applied, OutputAccumulator};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::session::{Job, NotebookSession, RunningExecution, RunningKernel};
use super::unrecorded;
use super::writeback::{self, Pending, PendingWrite};
use super::{Engine, EngineError};
use crate::store::{self, ExecutionRecord, Status};

/// How often outputs of a running execution are published (in memory, to waiters) and, at
/// most that often, persisted.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// Persisting progress rewrites the outputs so far; it happens at most once per
/// `bytes / PERSIST_BYTES_PER_SEC` seconds, so a chatty cell costs the store about this many
/// bytes a second at most, not O(n²) (issue 8 item 9). The final record is always written.
const PERSIST_BYTES_PER_SEC: f64 = 256.0 * 1024.0;

/// Runs the queue of one notebook until the engine drops the session. A panic unwinds out of
/// here to the supervisor (`supervise.rs`), which settles the job in hand and calls this again
/// with the same receiver: queued jobs are not lost.
pub async fn serve(
    engine: &Engine,
    session: &Arc<NotebookSession>,
    rx: &mut mpsc::UnboundedReceiver<Job>,
) {
    let mut pending = Pending::default();
    loop {
        // Outputs of finished executions reach the file by their deadline even when the
        // queue is idle or the next cell runs long (`drive` flushes too).
        let job = tokio::select! {
            job = rx.recv() => job,
            _ = tokio::time::sleep_until(pending.due().unwrap_or_else(far_future)), if !pending.is_empty() => {
                flush_logged(session, &mut pending).await;
                continue;
            }
            // A notebook nobody has used for a while is forgotten (its worker ends), so a
            // server that runs for months keeps no state per notebook it ever touched.
            _ = tokio::time::sleep(engine.config().volume.retire_idle_notebooks_after), if pending.is_empty() => {
                if engine.retire(session, rx) {
                    return;
                }
                continue;
            }
        };
        let Some(job) = job else { break };
        // Terminal states the store refused earlier are recorded first, in order.
        unrecorded::flush(engine).await;
        // Uncounted when this job ends, also by a panic (see `jobs.rs`).
        let _in_hand = session.jobs.in_hand();
        let id = match &job {
            Job::Run(id) | Job::Adopt(id) | Job::Started { id, .. } => id.clone(),
        };
        if let Ok(mut c) = session.current_job.lock() {
            *c = Some(id.clone());
        }
        super::testhooks::point("worker_job").await;
        let result = match job {
            Job::Run(id) => {
                let more_queued = !rx.is_empty();
                run_one(engine, session, &id, None, &mut pending, more_queued).await
            }
            Job::Started {
                id,
                kernel_session,
                msg_id,
            } => {
                let more_queued = !rx.is_empty();
                let started = Some((kernel_session, msg_id));
                run_one(engine, session, &id, started, &mut pending, more_queued).await
            }
            Job::Adopt(id) => super::recover::adopt(engine, session, &id).await,
        };
        if let Err(e) = result {
            tracing::error!(execution = %id, "execution failed inside the server: {e}");
            let note = format!("the server could not run this execution: {e}");
            finish_without_kernel(engine, &id, Status::Failed, "ServerError", &note).await;
        }
        if let Ok(mut c) = session.current_job.lock() {
            *c = None;
        }
        // Skipped (cancelled) jobs end a batch too: write what waits once nothing is queued.
        if rx.is_empty() && !pending.is_empty() {
            flush_logged(session, &mut pending).await;
        }
    }
}

async fn run_one(
    engine: &Engine,
    session: &Arc<NotebookSession>,
    id: &str,
    started: Option<(String, String)>,
    pending: &mut Pending,
    more_queued: bool,
) -> Result<(), EngineError> {
    // An execution accepted as `running` (idle queue) has its handle published already.
    let published = started
        .as_ref()
        .and_then(|_| session.running().filter(|r| r.id == id));
    let unpublish = || {
        if let Ok(mut r) = session.running.lock() {
            if r.as_ref().is_some_and(|r| r.id == id) {
                *r = None;
            }
        }
    };
    if engine.live().get(id).is_none() {
        unpublish();
        return Ok(()); // finished (cancelled) while queued
    }
    if engine.queued_held() {
        // Graceful shutdown: the row stays (or goes back to) `pending`; the next start runs it.
        if started.is_some() {
            unpublish();
            let owned = id.to_string();
            match engine
                .store()
                .call(move |c| store::executions::unstart(c, &owned))
                .await
            {
                Ok(_) => engine.live().set_status(id, Status::Pending),
                Err(e) => tracing::warn!(execution = %id, "could not put back as pending: {e}"),
            }
        }
        tracing::debug!(execution = %id, "left pending for the next start (shutting down)");
        return Ok(());
    }
    super::testhooks::point("worker_before_kernel").await;
    // Published before the row is marked, so that an interrupt arriving now finds it (and
    // waits in its gate until the kernel starts the request).
    let running = match published {
        Some(r) => r,
        None => {
            let r = Arc::new(RunningExecution::new(id));
            if started.is_some() {
                if let Ok(mut slot) = session.running.lock() {
                    *slot = Some(r.clone());
                }
            }
            r
        }
    };
    // An execution accepted as started and then interrupted (or its kernel shut down or
    // restarted) before it was sent is not run, and gets no kernel of its own.
    let stopped_before_send = || started.is_some() && running.interrupted.load(Ordering::SeqCst);
    // Checked again under the lifecycle lock: a shutdown that cancelled this execution while
    // the worker waited for the lock must not get a fresh kernel started.
    let wanted = || engine.live().get(id).is_some() && !stopped_before_send();
    let kernel = engine.ensure_kernel_for(session, None, &wanted).await;
    if stopped_before_send() {
        unpublish();
        let why = running
            .interrupt_reason
            .lock()
            .ok()
            .and_then(|r| r.clone())
            .unwrap_or_else(|| {
                "stopped (interrupted, or its kernel restarted or shut down)".into()
            });
        let msg = format!("{why} before it reached the kernel; it was not run");
        finish_without_kernel(engine, id, Status::Interrupted, "NotRun", &msg).await;
        return Ok(());
    }
    let (kernel, mut note) = match kernel {
        Ok(Some(k)) => k,
        Ok(None) => {
            unpublish();
            return Ok(()); // cancelled while waiting for the kernel
        }
        Err(e) => {
            unpublish();
            let msg = e.to_string();
            if let Some(rec) =
                finish_without_kernel(engine, id, Status::Failed, "KernelStartError", &msg).await
            {
                if rec.stop_on_error {
                    cancel_rest_of_batch(engine, &rec).await;
                }
            }
            return Ok(());
        }
    };
    let t0 = Instant::now();
    if started.is_none() {
        if let Ok(mut r) = session.running.lock() {
            *r = Some(running.clone());
        }
    }
    if super::interrupts::take_interrupt_for(session, id) {
        running.interrupted.store(true, Ordering::SeqCst);
        running.gate.request();
    }
    let (owned, sid) = (id.to_string(), kernel.session_id.clone());
    let (msg_id, marked) = match started {
        // Accepted as started on this kernel: nothing to commit, only the record to read.
        Some((ks, mid)) if ks == kernel.session_id => (
            mid,
            engine
                .store()
                .call(move |c| store::executions::get(c, &owned))
                .await
                .map(|r| r.filter(|r| r.status == Status::Running)),
        ),
        // Accepted on a kernel that is gone: it is sent to this one.
        Some((_, mid)) => (
            mid,
            engine
                .store()
                .call(move |c| store::executions::move_started(c, &owned, &sid))
                .await,
        ),
        None => {
            let mid = uuid::Uuid::new_v4().to_string();
            let m = mid.clone();
            let marked = engine
                .store()
                .call(move |c| store::executions::mark_running(c, &owned, &sid, &m))
                .await;
            (mid, marked)
        }
    };
    let rec = match marked {
        Ok(Some(rec)) => rec,
        Ok(None) => {
            unpublish();
            return Ok(()); // cancelled while queued
        }
        Err(e) => {
            unpublish();
            // Nothing was sent: the row stays as it was in the store (a `pending` one would
            // run once after a restart) and the execution ends here, saying why.
            let msg = format!(
                "not run: the state database could not record its start ({e}); submit it again once the database is writable"
            );
            finish_without_kernel(engine, id, Status::Failed, "StoreError", &msg).await;
            return Ok(());
        }
    };
    if rec
        .batch_id
        .as_deref()
        .is_some_and(|b| engine.unrecorded().batch_stopped(b))
    {
        unpublish();
        let msg = "not run: an earlier cell of this run_all_cells batch did not complete";
        finish_without_kernel(engine, id, Status::Cancelled, "BatchStopped", msg).await;
        return Ok(());
    }
    engine.live().set_status(id, Status::Running);
    let opts = ExecuteOptions {
        stop_on_error: !rec.allow_error,
        allow_stdin: engine.config().limits.allow_stdin,
        ..ExecuteOptions::default()
    };
    let t_running = t0.elapsed();
    let outcome = drive(
        engine, session, &kernel, &rec, &running, &msg_id, opts, pending,
    )
    .await;
    let t_kernel = t0.elapsed();
    if let Ok(mut r) = session.running.lock() {
        *r = None;
    }
    let mut done = rec.clone();
    done.finished_at = Some(store::now());
    done.started_at = done.started_at.or_else(|| Some(store::now()));
    done.outputs = outcome.outputs;
    done.execution_count = outcome.execution_count;
    done.status = outcome.status;
    done.error = outcome.error;
    if let Some(n) = outcome.note {
        note = Some(match note {
            Some(prev) => format!("{prev}\n{n}"),
            None => n,
        });
    }
    if let Some(cell_id) = &rec.cell_id {
        pending.push(PendingWrite {
            cell_id: cell_id.clone(),
            outputs: done.outputs.clone(),
            execution_count: done.execution_count,
            foreign: outcome.foreign,
            display_ids: outcome.display_ids,
        });
    }
    let stop_batch = rec.stop_on_error
        && !rec.allow_error
        && matches!(done.status, Status::Failed | Status::Interrupted);
    let stop_batch = stop_batch || (done.status == Status::Interrupted && rec.stop_on_error);
    // Batch writes while more of this notebook's executions wait; otherwise write now, so
    // the file holds the outputs when the execution is reported finished.
    if !pending.is_empty() && (!more_queued || stop_batch || pending.should_flush()) {
        match writeback::flush(session, pending).await {
            Ok(notes) if !notes.is_empty() => note = Some(join_notes(note, &notes)),
            Ok(_) => {}
            Err(EngineError::Storage(e)) => {
                note = Some(join_notes(
                    note,
                    &[format!("outputs are kept in memory and in this execution record, and are written to the notebook when its storage answers again ({})", e.detail)],
                ))
            }
            Err(e) => {
                note = Some(join_notes(
                    note,
                    &[format!("outputs are kept in this execution record but could not be written to the notebook: {e}")],
                ))
            }
        }
    }
    done.note = note;
    unrecorded::record_final(engine, done.clone()).await;
    tracing::debug!(
        execution = %id,
        mark_running_us = t_running.as_micros() as u64,
        kernel_us = (t_kernel - t_running).as_micros() as u64,
        finish_us = (t0.elapsed() - t_kernel).as_micros() as u64,
        "execution timings"
    );
    if stop_batch {
        cancel_rest_of_batch(engine, &rec).await;
    }
    Ok(())
}

struct Outcome {
    status: Status,
    outputs: Vec<Value>,
    execution_count: Option<i64>,
    error: Option<Value>,
    note: Option<String>,
    foreign: Vec<(String, Value, Value)>,
    display_ids: std::collections::HashMap<String, Vec<usize>>,
}

/// Sends the request and consumes its messages until both the `execute_reply` and the IOPub
/// `status: idle` arrived (as nbclient does), or the kernel died.
#[allow(clippy::too_many_arguments)]
async fn drive(
    engine: &Engine,
    session: &Arc<NotebookSession>,
    kernel: &RunningKernel,
    rec: &ExecutionRecord,
    running: &RunningExecution,
    msg_id: &str,
    opts: ExecuteOptions,
    pending: &mut Pending,
) -> Outcome {
    let mut acc = OutputAccumulator::new();
    let assets_dir = crate::assets::current().map(|a| a.dir().to_path_buf());
    let mut bound = super::bound::OutputBound::new(
        engine.config().volume.max_execution_output_bytes,
        assets_dir.as_deref(),
    );
    let mut persisted = Persisted {
        at: Instant::now(),
        bytes: 0,
    };
    let mut foreign = Vec::new();
    let mut reply: Option<Value> = None;
    let mut idle = false;
    let mut died: Option<String> = None;
    // Idle came without a reply: a shell barrier tells whether a reply can still come.
    let mut barrier: Option<std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>> =
        None;
    let (mut barrier_asked, mut barrier_passed, mut no_reply) = (false, false, false);
    let live = engine.live().get(&rec.id);
    match kernel
        .client
        .execute(&rec.code, opts, Some(msg_id.to_string()))
        .await
    {
        Err(e) => died = Some(format!("could not send the code to the kernel: {e}")),
        Ok(mut handle) => {
            let mut last_flush = Instant::now();
            let mut dirty = false;
            let limits = engine.config().limits;
            let max_cell = limits.max_cell.map(|d| tokio::time::Instant::now() + d);
            let mut input_deadline: Option<tokio::time::Instant> = None;
            let mut limit_hit = false;
            while reply.is_none() || !idle {
                // Outputs so far become visible at most PROGRESS_EVERY after they arrive,
                // even when the cell then goes quiet (a print followed by a long sleep).
                let flush_at = tokio::time::Instant::from_std(last_flush + PROGRESS_EVERY);
                let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
                if idle && reply.is_none() && !barrier_asked {
                    barrier_asked = true;
                    let client = kernel.client.clone();
                    barrier = Some(Box::pin(
                        async move { client.shell_barrier().await.is_ok() },
                    ));
                }
                let event = if barrier_passed && reply.is_none() {
                    // Everything the kernel replied before the barrier is routed: drain it.
                    match handle.try_next() {
                        Some(ev) => Some(ev),
                        None => {
                            no_reply = true;
                            break;
                        }
                    }
                } else {
                    tokio::select! {
                    ev = handle.next() => Some(ev),
                    passed = async { barrier.as_mut().expect("guarded").await }, if barrier.is_some() => {
                        barrier = None;
                        barrier_passed = passed;
                        None
                    }
                    _ = tokio::time::sleep_until(flush_at), if dirty => None,
                    _ = tokio::time::sleep_until(pending.due().unwrap_or(far)), if !pending.is_empty() => {
                        flush_logged(session, pending).await;
                        None
                    }
                    _ = tokio::time::sleep_until(max_cell.unwrap_or(far)), if max_cell.is_some() && !limit_hit => {
                        limit_hit = true;
                        let secs = limits.max_cell.map(|d| d.as_secs_f64()).unwrap_or_default();
                        server_interrupt(kernel, running, format!(
                            "interrupted by the server after {secs:.0} s (--max-cell-seconds)"
                        )).await;
                        None
                    }
                    _ = tokio::time::sleep_until(input_deadline.unwrap_or(far)), if input_deadline.is_some() => {
                        input_deadline = None;
                        let unanswered = running.input_request.lock().map(|r| r.is_some()).unwrap_or(false);
                        if unanswered {
                            let secs = limits.input_timeout.as_secs_f64();
                            server_interrupt(kernel, running, format!(
                                "interrupted by the server: input() got no answer within {secs:.0} s (answer prompts with send_input)"
                            )).await;
                        }
                        None
                    }
                    }
                };
                match event {
                    None => {}
                    Some(KernelEvent::Died(reason)) => {
                        died = Some(reason);
                        break;
                    }
                    Some(KernelEvent::Message(m)) => match m.msg_type.as_str() {
                        "execute_reply" => reply = Some(m.content),
                        "status" => {
                            let state = m.execution_state();
                            idle |= state == Some("idle");
                            if let Some(st @ ("busy" | "idle")) = state {
                                let nb = &rec.notebook;
                                engine.kernel_state(nb, &kernel.session_id, st, kernel.pid_opt());
                            }
                        }
                        "input_request" => {
                            let prompt = m
                                .content
                                .get("prompt")
                                .and_then(Value::as_str)
                                .unwrap_or("");
                            if let Some(l) = &live {
                                if let Ok(mut p) = l.input_prompt.lock() {
                                    *p = Some(prompt.to_string());
                                }
                            }
                            if let Ok(mut r) = running.input_request.lock() {
                                *r = Some(m.header.clone());
                            }
                            input_deadline =
                                Some(tokio::time::Instant::now() + limits.input_timeout);
                        }
                        other => {
                            // The kernel started the request: an interrupt that came earlier
                            // can take effect now.
                            let started = other == "execute_input"
                                || !matches!(other, "status" | "execute_reply");
                            if started && running.gate.kernel_started() {
                                tracing::info!(execution = %running.id, "delivering an interrupt that arrived before the kernel started the cell");
                                if let Err(e) = super::session::interrupt(kernel).await {
                                    tracing::warn!(execution = %running.id, "could not interrupt: {e}");
                                }
                            }
                            if other.starts_with("comm_") {
                                if let Ok(mut w) = session.widgets.lock() {
                                    w.apply(
                                        &kernel.session_id,
                                        &m.msg_type,
                                        &m.content,
                                        &m.buffers,
                                    );
                                }
                            }
                            // Outputs inside an Output widget (`with out:`) go to the widget.
                            let captured = m.parent_msg_id.as_deref().is_some_and(|parent| {
                                session
                                    .widgets
                                    .lock()
                                    .is_ok_and(|mut w| w.capture(parent, &m.msg_type, &m.content))
                            });
                            if captured {
                                continue;
                            }
                            publish_output(engine, rec, &m.msg_type, &m.content);
                            let mut changed = false;
                            for applied in acc.apply(&m.msg_type, &m.content) {
                                match applied {
                                    Applied::Changed => {
                                        dirty = true;
                                        changed = true;
                                    }
                                    Applied::ForeignDisplay {
                                        display_id,
                                        data,
                                        metadata,
                                    } => foreign.push((display_id, data, metadata)),
                                    Applied::Unchanged => {}
                                }
                            }
                            if changed {
                                bound.after_change(&mut acc, super::bound::json_len(&m.content));
                            }
                        }
                    },
                }
                if dirty && last_flush.elapsed() >= PROGRESS_EVERY {
                    dirty = false;
                    last_flush = Instant::now();
                    publish_progress(engine, &rec.id, live.as_deref(), &acc, &mut persisted).await;
                }
            }
        }
    }
    let mut finished = acc.finish();
    let (notebook, id) = (rec.notebook.clone(), rec.id.clone());
    crate::assets::blocking(|| bound.finish(&mut finished.outputs, &notebook, &id));
    let interrupted = running.interrupted.load(Ordering::SeqCst);
    let (status, error, mut note) = if no_reply {
        no_reply_outcome(interrupted)
    } else {
        classify(reply.as_ref(), died, interrupted, kernel)
    };
    if let Some(reason) = running.interrupt_reason.lock().ok().and_then(|r| r.clone()) {
        if status == Status::Interrupted {
            note = Some(reason);
        }
    }
    Outcome {
        status,
        outputs: finished.outputs,
        execution_count: finished.execution_count,
        error,
        note,
        foreign,
        display_ids: finished.display_ids,
    }
}

/// Publishes the `/events` event (SPEC §7) of an IOPub message that is an nbformat output, a
/// `clear_output` or an `update_display_data` (see `Event::from_iopub`), bounded as agents
/// get it; nothing is built when nobody subscribes.
pub(super) fn publish_output(
    engine: &Engine,
    rec: &ExecutionRecord,
    msg_type: &str,
    content: &Value,
) {
    let max_text = engine.config().max_text_bytes;
    let hub = engine.events();
    if hub.wanted() {
        let (id, nb) = (&rec.id, &rec.notebook);
        if let Some(ev) = crate::events::Event::from_iopub(id, nb, msg_type, content, max_text) {
            hub.publish(ev);
        }
    }
}

/// Interrupts the running execution on the server's own initiative, recording why.
pub(super) async fn server_interrupt(
    kernel: &RunningKernel,
    running: &RunningExecution,
    reason: String,
) {
    tracing::info!(execution = %running.id, "{reason}");
    if let Ok(mut r) = running.interrupt_reason.lock() {
        *r = Some(reason);
    }
    running.interrupted.store(true, Ordering::SeqCst);
    if let Err(e) = super::session::interrupt(kernel).await {
        tracing::warn!(execution = %running.id, "could not interrupt: {e}");
    }
}

/// The kernel finished a request without replying to it (ipykernel does so when a SIGINT
/// lands before the cell starts, or its handler fails): the execution ends instead of waiting
/// for a reply that will never come.
fn no_reply_outcome(interrupted: bool) -> (Status, Option<Value>, Option<String>) {
    if interrupted {
        return (
            Status::Interrupted,
            Some(
                json!({"ename": "KeyboardInterrupt", "evalue": "interrupted before the cell started", "traceback": []}),
            ),
            Some(
                "interrupted on request before the kernel started the cell; it did not run".into(),
            ),
        );
    }
    (
        Status::Failed,
        Some(json!({"ename": "NoReply", "evalue": "the kernel went idle without replying to this request", "traceback": []})),
        Some("the kernel finished this request without a reply (see the kernel log); the cell may not have run".into()),
    )
}

fn classify(
    reply: Option<&Value>,
    died: Option<String>,
    interrupted: bool,
    kernel: &RunningKernel,
) -> (Status, Option<Value>, Option<String>) {
    if let Some(reply) = reply {
        let err = || {
            json!({
                "ename": reply.get("ename").cloned().unwrap_or(json!("")),
                "evalue": reply.get("evalue").cloned().unwrap_or(json!("")),
                "traceback": reply.get("traceback").cloned().unwrap_or(json!([])),
            })
        };
        return match reply.get("status").and_then(Value::as_str) {
            Some("ok") => (Status::Completed, None, None),
            Some("aborted") => (
                Status::Cancelled,
                None,
                Some("the kernel aborted this request because an earlier one failed".into()),
            ),
            _ if interrupted => (
                Status::Interrupted,
                Some(err()),
                Some("interrupted on request".into()),
            ),
            _ => (Status::Failed, Some(err()), None),
        };
    }
    let reason = died.unwrap_or_else(|| "the kernel connection closed".into());
    if interrupted || kernel.stopping.load(Ordering::SeqCst) {
        return (
            Status::Interrupted,
            None,
            Some(format!("the kernel was stopped while this ran ({reason})")),
        );
    }
    (
        Status::Failed,
        Some(json!({"ename": "DeadKernelError", "evalue": reason, "traceback": []})),
        Some("the kernel died while running this; the next execution starts a fresh kernel".into()),
    )
}

/// When progress was last persisted, and how big it was.
struct Persisted {
    at: Instant,
    bytes: usize,
}

/// Publishes the outputs so far to waiters and, when [`PERSIST_BYTES_PER_SEC`] allows,
/// records them in the store.
async fn publish_progress(
    engine: &Engine,
    id: &str,
    live: Option<&super::live::LiveExecution>,
    acc: &OutputAccumulator,
    persisted: &mut Persisted,
) {
    // Shared by the waiters' view and the persisting thread: one copy per publish, and the
    // JSON encoding happens on the blocking pool, not on the async runtime.
    let outputs = Arc::new(acc.snapshot());
    let count = acc.execution_count();
    let wait = Duration::from_secs_f64(persisted.bytes as f64 / PERSIST_BYTES_PER_SEC);
    if persisted.at.elapsed() >= wait {
        let (owned, shared) = (id.to_string(), outputs.clone());
        match engine
            .store()
            .call(move |c| {
                let json = serde_json::to_string(shared.as_ref())?;
                store::executions::record_progress_json(c, &owned, &json, count)?;
                Ok(json.len())
            })
            .await
        {
            Ok(bytes) => {
                *persisted = Persisted {
                    at: Instant::now(),
                    bytes,
                }
            }
            Err(e) => {
                // Retried after the usual wait, not at once.
                persisted.at = Instant::now();
                tracing::warn!(execution = %id, "could not record progress: {e}");
            }
        }
    }
    if let Some(l) = live {
        if let Ok(mut p) = l.partial.lock() {
            *p = (outputs, count);
        }
    }
}

/// Writes one execution's outputs into its cell now (used by recovery).
pub(super) async fn write_cell_outputs(
    session: &Arc<NotebookSession>,
    cell_id: &str,
    done: &ExecutionRecord,
) -> Result<Vec<String>, EngineError> {
    let mut pending = Pending::default();
    pending.push(PendingWrite {
        cell_id: cell_id.to_string(),
        outputs: done.outputs.clone(),
        execution_count: done.execution_count,
        foreign: vec![],
        display_ids: Default::default(),
    });
    writeback::flush(session, &mut pending).await
}

/// Flushes pending notebook writes; a failure is logged (the records keep the outputs).
async fn flush_logged(session: &Arc<NotebookSession>, pending: &mut Pending) {
    if let Err(e) = writeback::flush(session, pending).await {
        tracing::warn!(notebook = %session.path.rel, "could not write outputs to the notebook: {e}");
    }
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}

fn join_notes(note: Option<String>, more: &[String]) -> String {
    let mut all: Vec<String> = note.into_iter().collect();
    all.extend(more.iter().cloned());
    all.join("\n")
}

/// Records a terminal state for an execution that never reached a kernel. It ends in memory
/// even when the store fails (see `unrecorded.rs`). Returns the record if this call ended it.
pub async fn finish_without_kernel(
    engine: &Engine,
    id: &str,
    status: Status,
    ename: &str,
    message: &str,
) -> Option<ExecutionRecord> {
    unrecorded::settle(engine, id, status, ename, message).await
}

/// Cancels the pending rest of a stop-on-error `run_all_cells` batch after `rec` did not
/// complete (in memory at least, if the store fails).
pub(super) async fn cancel_rest_of_batch(engine: &Engine, rec: &ExecutionRecord) {
    let Some(batch) = rec.batch_id.clone() else {
        return;
    };
    let note = format!(
        "not run: cell '{}' before it in this run_all_cells batch did not complete",
        rec.cell_id.clone().unwrap_or_default()
    );
    unrecorded::cancel_batch(engine, batch, note).await;
}
