//! A notebook's kernel session: which kernel runs its code, starting it on demand, noticing
//! when it dies, and interrupt / restart / shutdown. One session per notebook; its worker
//! (see `worker.rs`) runs the notebook's executions in order.

use std::collections::HashMap;
use std::os::unix::fs::DirBuilderExt as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jmcp_kernel::launch::{log_tail, LaunchOptions};
use jmcp_kernel::{process, start_kernel, InterruptMode, KernelClient, KernelSpec};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use super::notebook_ops::FileLock;
use super::{EngineError, EngineResult};
use crate::paths::RootedPath;
use crate::store::{self, KernelSessionRecord};

/// A kernel process serving one notebook.
pub struct RunningKernel {
    /// Connected client.
    pub client: KernelClient,
    /// Process id (= process group id).
    pub pid: u32,
    /// Kernelspec it was started from.
    pub spec: KernelSpec,
    /// Row id in `kernel_sessions`.
    pub session_id: String,
    /// RFC 3339.
    pub started_at: String,
    /// Start time of the process (PID-reuse guard).
    pub pid_start: Option<u64>,
    /// Kernel log (stdout+stderr).
    pub log_file: std::path::PathBuf,
    /// Connection file.
    pub connection_file: std::path::PathBuf,
    /// `Some(reason)` once the process exited.
    pub exited: watch::Receiver<Option<String>>,
    /// Set before we stop it on purpose (restart/shutdown), so its end is not reported as a crash.
    pub stopping: AtomicBool,
    /// `kernel_info_reply` content.
    pub kernel_info: Value,
    /// Where a remote kernel runs (SPEC §10); `None` for a local process. A remote kernel has
    /// `pid` 0 and no log or connection file: it is interrupted, stopped and watched through
    /// its gateway, never with signals.
    pub remote: Option<jmcp_kernel::RemoteKernel>,
}

impl RunningKernel {
    /// The process id of a local kernel; `None` for a remote one.
    pub fn pid_opt(&self) -> Option<u32> {
        self.remote.is_none().then_some(self.pid)
    }

    /// `gateway URL kernel ID` for a remote kernel (never the token).
    pub fn location(&self) -> Option<String> {
        self.remote.as_ref().map(|r| r.location())
    }

    /// `starting`/`idle`/`busy`, or `dead`.
    pub fn state(&self) -> String {
        if self.exited.borrow().is_some() || self.client.dead_reason().is_some() {
            "dead".into()
        } else {
            self.client.execution_state()
        }
    }

    /// Last lines of the kernel's stderr/stdout log.
    pub fn log_tail(&self, n: usize) -> Vec<String> {
        log_tail(&self.log_file, n)
    }
}

/// The execution currently in the kernel.
pub struct RunningExecution {
    /// Execution id.
    pub id: String,
    /// Set by interrupt/restart so that the resulting error is recorded as `interrupted`.
    pub interrupted: Arc<AtomicBool>,
    /// Why the server itself interrupted it (time limit, unanswered input), if it did.
    pub interrupt_reason: Mutex<Option<String>>,
    /// Header of a pending `input_request`.
    pub input_request: Mutex<Option<Value>>,
    /// Holds an interrupt until the kernel has started the request (see `interrupts`).
    pub gate: super::interrupts::InterruptGate,
}

impl RunningExecution {
    /// A fresh record for execution `id`: not interrupted, no prompt, gate closed.
    pub fn new(id: &str) -> RunningExecution {
        RunningExecution {
            id: id.to_string(),
            interrupted: Arc::new(Default::default()),
            interrupt_reason: Default::default(),
            input_request: Default::default(),
            gate: Default::default(),
        }
    }
}

/// Work for a notebook's worker.
#[derive(Debug, Clone)]
pub enum Job {
    /// Run a pending execution.
    Run(String),
    /// Run an execution accepted directly as `running` while the queue was idle (one fsync'd
    /// commit; see `jobs.rs`): its row already names `kernel_session` and `msg_id`, and its
    /// [`RunningExecution`] is already published in [`NotebookSession::running`].
    Started {
        /// Execution id.
        id: String,
        /// `kernel_sessions` row id of the kernel it was accepted on.
        kernel_session: String,
        /// `msg_id` its execute_request will carry.
        msg_id: String,
    },
    /// Follow an execution that was `running` when the previous server process died, on a
    /// kernel that survived: find out how it ended and record that.
    Adopt(String),
}

/// Everything the engine keeps per notebook.
pub struct NotebookSession {
    /// The notebook.
    pub path: RootedPath,
    /// Jobs to run, in order. Send through [`NotebookSession::send`], which counts them.
    pub queue: mpsc::UnboundedSender<Job>,
    /// Jobs sent to the worker and not finished (see `jobs.rs`).
    pub jobs: super::jobs::JobCount,
    /// The current kernel, if any.
    pub kernel: Mutex<Option<Arc<RunningKernel>>>,
    /// The execution in the kernel now.
    pub running: Mutex<Option<Arc<RunningExecution>>>,
    /// The job the worker is handling (settled by the supervisor if the worker panics).
    pub current_job: Mutex<Option<String>>,
    /// Why the previous kernel died, to tell the next execution.
    pub death_note: Mutex<Option<String>>,
    /// An interrupt asked for while nothing ran: the id of the queued execution it is for.
    pub interrupt_next: Mutex<Option<String>>,
    /// Serialises kernel start/restart/shutdown.
    pub lifecycle: tokio::sync::Mutex<()>,
    /// Serialises notebook file edits.
    pub file_lock: FileLock,
    /// display_id -> (cell_id -> output indices), for `update_display_data` across cells.
    pub displays: Mutex<HashMap<String, HashMap<String, Vec<usize>>>>,
    /// Live widget state of the kernel, written to `metadata.widgets` with the outputs.
    pub widgets: Mutex<super::widgets::WidgetState>,
}

impl NotebookSession {
    /// A session with an idle queue; the caller spawns the worker on the receiver.
    pub fn new(path: RootedPath) -> (Arc<NotebookSession>, mpsc::UnboundedReceiver<Job>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let s = Arc::new(NotebookSession {
            path,
            queue: tx,
            jobs: Default::default(),
            kernel: Mutex::new(None),
            running: Mutex::new(None),
            current_job: Mutex::new(None),
            death_note: Mutex::new(None),
            interrupt_next: Mutex::new(None),
            lifecycle: tokio::sync::Mutex::new(()),
            file_lock: Arc::new(Mutex::new(())),
            displays: Mutex::new(HashMap::new()),
            widgets: Mutex::new(Default::default()),
        });
        (s, rx)
    }

    /// The live kernel, if there is one and it has not died.
    pub fn current_kernel(&self) -> Option<Arc<RunningKernel>> {
        let k = self.kernel.lock().ok()?.clone()?;
        (k.state() != "dead").then_some(k)
    }

    /// The running execution, if any.
    pub fn running(&self) -> Option<Arc<RunningExecution>> {
        self.running.lock().ok()?.clone()
    }

    /// Queues `job` for the worker, counted in [`NotebookSession::jobs`]. Fails only when
    /// the worker is gone (the server is shutting down); the job is then uncounted.
    pub fn send(&self, job: Job) -> Result<(), Job> {
        self.jobs.add(1);
        self.queue.send(job).map_err(|e| {
            self.jobs.done();
            e.0
        })
    }
}

/// Starts a kernel for `session` from `spec`, records it, and watches its process.
pub async fn launch_kernel(
    engine: &super::Engine,
    session: &Arc<NotebookSession>,
    spec: &KernelSpec,
) -> EngineResult<Arc<RunningKernel>> {
    let cfg = engine.config();
    let cwd = session
        .path
        .abs
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|| cfg.root.path().to_path_buf());
    if let Some(gateway) = &cfg.gateway {
        return super::remote::launch(engine, session, spec, gateway).await;
    }
    let (checkpoints, data) = prepare_data_dir(engine).await?;
    // The kernel's working folder must answer too (its spawn enters it), bounded (SPEC §8).
    let dir = cwd.clone();
    let real_cwd = engine
        .storage()
        .run(
            crate::storage::Place::Root,
            &cwd,
            "entering the notebook's folder to start its kernel",
            move || dir.canonicalize(),
        )
        .await?;
    // Landlock can only allow: hiding a data dir that lies inside the kernel's working folder
    // would stop the kernel from creating files in its own folder. Such a layout cannot keep
    // the data dir from the kernel at all; say so rather than break the user's code.
    let inside_cwd = match (data, real_cwd) {
        (Some(data), Ok(dir)) => data.starts_with(dir),
        _ => false,
    };
    let hide = if inside_cwd {
        tracing::warn!(
            "the data dir {} is inside the notebook folder {}: kernel code can read it (checkpoint key, state.db); use a --data-dir outside the notebook root",
            cfg.data_dir.display(),
            cwd.display()
        );
        Vec::new()
    } else {
        vec![cfg.data_dir.clone()]
    };
    // A warm kernel of the same kernelspec is claimed instead of booting one (it was started
    // confined the same way, with the done hook; `pool::claim` moves it to `cwd`).
    if !inside_cwd {
        if let Some(kernel) = super::pool::claim(engine, session, spec, &cwd).await {
            return Ok(kernel);
        }
    }
    let opts = LaunchOptions {
        cwd,
        runtime_dir: cfg.kernels_dir(),
        hide,
        hide_except: vec![checkpoints],
    };
    let kernel_id = uuid::Uuid::new_v4().to_string();
    let nb = session.path.rel.as_str();
    engine.reserve_kernel_slot(nb, &kernel_id).await?;
    engine.kernel_state(nb, &kernel_id, "starting", None);
    let started = match start_kernel(spec, &opts, cfg.kernel_start_timeout).await {
        Ok(s) => s,
        Err(e) => {
            engine.kernel_state(nb, &kernel_id, "dead", None);
            return Err(e.into());
        }
    };
    let launched = started.launched;
    if launched.confinement == jmcp_kernel::sandbox::Confinement::NotEnforced {
        tracing::warn!(
            "Landlock is not available on this Linux: kernel code running as this user can read {} (checkpoint key, state.db)",
            cfg.data_dir.display()
        );
    }
    let record = launched_record(&kernel_id, &session.path.rel, spec, &launched, "idle");
    let rec = record.clone();
    if let Err(e) = engine.store().call(move |c| rec.insert(c)).await {
        engine.kernel_state(nb, &kernel_id, "dead", None);
        return Err(e.into());
    }
    if spec.is_ipykernel() {
        install_done_hook(&started.client).await;
    }
    engine.kernel_state(nb, &kernel_id, "idle", Some(launched.pid));
    Ok(install_started(
        engine,
        session,
        spec,
        &record,
        launched,
        started.client,
        started.kernel_info,
    ))
}

/// Wraps a started kernel (launched here, or claimed from the warm pool) as the running kernel
/// of `session`, and spawns its death watcher. The caller records it in `state.db` first.
pub(super) fn install_started(
    engine: &super::Engine,
    session: &Arc<NotebookSession>,
    spec: &KernelSpec,
    record: &KernelSessionRecord,
    mut launched: jmcp_kernel::launch::LaunchedKernel,
    client: KernelClient,
    kernel_info: Value,
) -> Arc<RunningKernel> {
    let (exit_tx, exit_rx) = watch::channel(None);
    let kernel = Arc::new(RunningKernel {
        client,
        pid: launched.pid,
        pid_start: launched.start_time,
        spec: spec.clone(),
        session_id: record.id.clone(),
        started_at: record.started_at.clone(),
        log_file: launched.log_file.clone(),
        connection_file: launched.connection_file.clone(),
        exited: exit_rx,
        stopping: AtomicBool::new(false),
        kernel_info,
        remote: None,
    });
    // The child handle reaps the process; its exit is reported by the watcher.
    let exit = async move {
        match launched.child.wait().await {
            Ok(s) => format!("the kernel process exited ({s})"),
            Err(e) => format!("the kernel process was lost ({e})"),
        }
    };
    watch_kernel(engine, session, &kernel, exit_tx, exit);
    kernel
}

/// Prepares the data dir for a local kernel launch, bounded by `--storage-timeout` (SPEC §8):
/// creates the checkpoints folder and the private kernels folder (the connection file and the
/// kernel log are written there next) and resolves the data dir. Returns the checkpoints
/// folder and the data dir's real path (None if it cannot be resolved). Errors: the data dir
/// does not answer ([`super::EngineError::Storage`]) or the kernels folder cannot be made.
///
/// A freeze that starts between this check and the launch's own writes is not bounded (the
/// launch runs on the async runtime); this check makes that window a few milliseconds.
pub(super) async fn prepare_data_dir(
    engine: &super::Engine,
) -> EngineResult<(std::path::PathBuf, Option<std::path::PathBuf>)> {
    let cfg = engine.config().clone();
    let kernels = cfg.kernels_dir();
    let (checkpoints, made, data) = engine
        .storage()
        .run(
            crate::storage::Place::DataDir,
            &kernels,
            "preparing the kernel's connection file",
            move || {
                let checkpoints = checkpoints_dir(&cfg);
                let made = jmcp_kernel::launch::ensure_private_dir(&cfg.kernels_dir());
                (checkpoints, made, cfg.data_dir.canonicalize().ok())
            },
        )
        .await?;
    made?;
    Ok((checkpoints, data))
}

/// `DATA_DIR/checkpoints`, created (0700) if missing: kernels write and read their checkpoint
/// files there (signed and verified by the server), so it must exist before a kernel is
/// confined (it is the one folder of the data dir left usable). A failure is logged: the
/// kernel then meets it at its first checkpoint.
pub(super) fn checkpoints_dir(cfg: &crate::config::Config) -> std::path::PathBuf {
    let checkpoints = cfg.data_dir.join("checkpoints");
    if let Err(e) = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&checkpoints)
    {
        tracing::warn!("could not create {}: {e}", checkpoints.display());
    }
    checkpoints
}

/// The `kernel_sessions` row of a kernel just launched from `spec`, for `notebook` (root-relative;
/// empty for a pool kernel) in `state`, started now.
pub(super) fn launched_record(
    id: &str,
    notebook: &str,
    spec: &KernelSpec,
    launched: &jmcp_kernel::launch::LaunchedKernel,
    state: &str,
) -> KernelSessionRecord {
    KernelSessionRecord {
        id: id.to_string(),
        notebook: notebook.to_string(),
        kernel_name: spec.name.clone(),
        pid: Some(launched.pid),
        pid_start_time: launched.start_time,
        connection_file: Some(launched.connection_file.to_string_lossy().to_string()),
        log_file: Some(launched.log_file.to_string_lossy().to_string()),
        state: state.to_string(),
        started_at: store::now(),
        remote: None,
    }
}

/// A kernel found alive after a server restart, reconnected and confirmed with kernel_info.
pub struct Reattached {
    /// The session row it belongs to.
    pub record: KernelSessionRecord,
    /// Its kernelspec (looked up again by name).
    pub spec: KernelSpec,
    /// Connected client.
    pub client: KernelClient,
    /// `kernel_info_reply` content.
    pub kernel_info: Value,
    /// Set for a remote kernel reconnected through its gateway.
    pub remote: Option<jmcp_kernel::RemoteKernel>,
}

impl Reattached {
    /// Confirms a reconnected kernel with `kernel_info` on the control channel (answered even
    /// while a cell runs) within `timeout`; the error says it did not answer.
    pub async fn confirm(
        record: &KernelSessionRecord,
        spec: KernelSpec,
        client: KernelClient,
        timeout: Duration,
        remote: Option<jmcp_kernel::RemoteKernel>,
    ) -> Result<Reattached, String> {
        let kernel_info = client
            .wait_ready_via_control(timeout)
            .await
            .map_err(|e| format!("it did not answer kernel_info: {e}"))?;
        Ok(Reattached {
            record: record.clone(),
            spec,
            client,
            kernel_info,
            remote,
        })
    }
}

/// Installs a reattached kernel as the session's kernel and watches its process (a pidfd:
/// it is not our child any more).
pub fn adopt_kernel(
    engine: &super::Engine,
    session: &Arc<NotebookSession>,
    found: Reattached,
) -> Arc<RunningKernel> {
    let pid = found.record.pid.unwrap_or_default();
    let pid_start = found.record.pid_start_time;
    let (exit_tx, exit_rx) = watch::channel(None);
    let kernel = Arc::new(RunningKernel {
        client: found.client,
        pid,
        pid_start,
        spec: found.spec,
        session_id: found.record.id.clone(),
        started_at: found.record.started_at.clone(),
        log_file: found.record.log_file.clone().unwrap_or_default().into(),
        connection_file: found
            .record
            .connection_file
            .clone()
            .unwrap_or_default()
            .into(),
        exited: exit_rx,
        stopping: AtomicBool::new(false),
        kernel_info: found.kernel_info,
        remote: found.remote,
    });
    if kernel.remote.is_some() {
        let client = kernel.client.clone();
        watch_kernel(engine, session, &kernel, exit_tx, async move {
            client.wait_dead().await
        });
    } else {
        let exit = async move {
            process::wait_for_exit(pid, pid_start).await;
            "the kernel process exited".to_string()
        };
        watch_kernel(engine, session, &kernel, exit_tx, exit);
    }
    if let Ok(mut k) = session.kernel.lock() {
        *k = Some(kernel.clone());
    }
    engine.kernel_state(
        &session.path.rel,
        &kernel.session_id,
        "idle",
        kernel.pid_opt(),
    );
    kernel
}

/// Spawns the death watcher: when `exit` resolves, the kernel is marked dead, its session row
/// ended, its connection file removed, and (if that was not on purpose) the notebook's next
/// execution is told why.
pub(super) fn watch_kernel(
    engine: &super::Engine,
    session: &Arc<NotebookSession>,
    kernel: &Arc<RunningKernel>,
    exit_tx: watch::Sender<Option<String>>,
    exit: impl std::future::Future<Output = String> + Send + 'static,
) {
    let weak_kernel = Arc::downgrade(kernel);
    let weak_session = Arc::downgrade(session);
    let store = engine.store().clone();
    let (states, events) = (engine.kernel_states().clone(), engine.events().clone());
    let memory = engine.memory_watch().clone();
    let notebook = session.path.rel.clone();
    let (kernel_id, pid) = (kernel.session_id.clone(), kernel.pid_opt());
    tokio::spawn(async move {
        let mut reason = match pid {
            Some(pid) => memory.explain_exit(pid, exit.await),
            None => exit.await,
        };
        let Some(kernel) = weak_kernel.upgrade() else {
            // Dropped without a stop (the engine went away): no longer counted.
            states.forget(&kernel_id);
            return;
        };
        let tail = kernel.log_tail(10);
        let intentional = kernel.stopping.load(Ordering::SeqCst);
        if !intentional && !tail.is_empty() {
            reason.push_str(&format!(". Last lines of its stderr:\n{}", tail.join("\n")));
        }
        // Tell the session first: the worker may start a replacement kernel as soon as the
        // running execution learns of the death, and that one must carry the note.
        if let Some(session) = weak_session.upgrade() {
            if !intentional {
                if let Ok(mut note) = session.death_note.lock() {
                    *note = Some(reason.clone());
                }
            }
            if let Ok(mut k) = session.kernel.lock() {
                if k.as_ref().is_some_and(|cur| Arc::ptr_eq(cur, &kernel)) {
                    *k = None;
                }
            }
        }
        kernel.client.mark_dead(reason.clone());
        exit_tx.send_replace(Some(reason.clone()));
        match &kernel.remote {
            // A remote kernel that died on its own may have been restarted by its server with
            // its state lost: it is not ours any more, so it is shut down (best effort).
            Some(r) if !intentional => {
                if let Err(e) = r.gateway.shutdown(&r.kernel_id).await {
                    tracing::debug!("after its death: {e}");
                }
            }
            Some(_) => {}
            None => {
                let _ = std::fs::remove_file(&kernel.connection_file);
            }
        }
        let (state, why) = if intentional {
            ("shutdown", "stopped by request".to_string())
        } else {
            ("dead", reason)
        };
        // Intentional stops (restart, shutdown) are reported by whoever stopped the kernel,
        // in order with the new kernel's states; this only takes it off the count.
        if intentional {
            states.forget(&kernel_id);
        } else {
            states.report(&events, &notebook, &kernel_id, "dead", pid);
        }
        let id = kernel.session_id.clone();
        let _ = store
            .call(move |c| store::sessions::end_session(c, &id, state, &why))
            .await;
    });
}

/// Registers an IPython `post_run_cell` hook that remembers, per request `msg_id`, how each
/// execution ended. After a server restart this tells whether an execution that was `running`
/// completed in the kernel (so it is never reported lost, nor run twice). Idempotent.
pub(super) async fn install_done_hook(client: &KernelClient) {
    let opts = jmcp_kernel::ExecuteOptions {
        store_history: false,
        allow_stdin: false,
        stop_on_error: false,
        silent: true,
    };
    match client.execute(DONE_HOOK_CODE, opts, None).await {
        Ok(mut h) => {
            // Reply and IOPub idle both: the kernel is idle again when the start is reported.
            let wait = async {
                let (mut reply, mut idle) = (None, false);
                while reply.is_none() || !idle {
                    match h.next().await {
                        jmcp_kernel::KernelEvent::Message(m) if m.msg_type == "execute_reply" => {
                            reply = Some(m.content)
                        }
                        jmcp_kernel::KernelEvent::Message(m) => {
                            idle |= m.execution_state() == Some("idle")
                        }
                        jmcp_kernel::KernelEvent::Died(_) => return Value::Null,
                    }
                }
                reply.unwrap_or(Value::Null)
            };
            match tokio::time::timeout(Duration::from_secs(10), wait).await {
                Ok(reply) if reply.get("status").and_then(Value::as_str) == Some("ok") => {}
                other => tracing::warn!("could not install the completion hook: {other:?}"),
            }
        }
        Err(e) => tracing::warn!("could not install the completion hook: {e}"),
    }
}

/// Marker printed by the code of [`done_query_code`].
pub const DONE_MARKER: &str = "__JMCP_DONE__";

const DONE_HOOK_CODE: &str = r#"
def __jmcp_install_done_hook():
    ip = get_ipython()
    if getattr(ip, '_jmcp_done', None) is not None:
        return
    done = {}
    def post_run_cell(result):
        try:
            mid = ip.kernel.get_parent()['header']['msg_id']
        except Exception:
            return
        err = result.error_in_exec or result.error_before_exec
        done[mid] = {'ok': bool(result.success), 'count': result.execution_count,
                     'ename': type(err).__name__ if err is not None else None,
                     'evalue': str(err) if err is not None else None}
        while len(done) > 100000:
            done.pop(next(iter(done)))
    ip.events.register('post_run_cell', post_run_cell)
    ip._jmcp_done = done
__jmcp_install_done_hook()
del __jmcp_install_done_hook
"#;

/// Key of the answer of [`done_query_code`] that says whether the hook is installed.
pub const HOOK_KEY: &str = "__hook_installed__";

/// Code that prints `__JMCP_DONE__{json}` with the hook's records for the given msg_ids, plus
/// `HOOK_KEY: true|false` (whether the hook is installed, so a missing record means "not
/// run" only when the hook could have recorded it).
pub fn done_query_code(msg_ids: &[String]) -> String {
    let ids = serde_json::to_string(msg_ids).unwrap_or_else(|_| "[]".into());
    format!(
        "import json as __jmcp_json\n__jmcp_d = getattr(get_ipython(), '_jmcp_done', None)\n__jmcp_a = {{m: (__jmcp_d or {{}}).get(m) for m in __jmcp_json.loads({ids:?})}}\n__jmcp_a['{HOOK_KEY}'] = __jmcp_d is not None\nprint('{DONE_MARKER}' + __jmcp_json.dumps(__jmcp_a))\ndel __jmcp_json, __jmcp_d, __jmcp_a"
    )
}

/// Interrupts the kernel as its kernelspec says (`signal`: SIGINT to its process group;
/// `message`: `interrupt_request` on control).
pub async fn interrupt(kernel: &RunningKernel) -> EngineResult<()> {
    if let Some(r) = &kernel.remote {
        return Ok(r.gateway.interrupt(&r.kernel_id).await?);
    }
    if !process::is_alive(kernel.pid, kernel.pid_start) {
        return Err(EngineError::Kernel(jmcp_kernel::KernelError::Died {
            stderr_tail: kernel.log_tail(5),
        }));
    }
    match kernel.spec.interrupt_mode {
        InterruptMode::Signal => process::signal_group(kernel.pid, libc::SIGINT).map_err(|e| {
            EngineError::Kernel(jmcp_kernel::KernelError::io(
                "sending SIGINT to the kernel",
                e,
            ))
        }),
        InterruptMode::Message => {
            let mut h = kernel.client.interrupt_request().await?;
            let _ = tokio::time::timeout(Duration::from_secs(5), h.next()).await;
            Ok(())
        }
    }
}

/// Stops a kernel: `shutdown_request`, then SIGTERM, then SIGKILL to its process group,
/// waiting for the process to exit at each step.
pub async fn stop_kernel(kernel: &RunningKernel) {
    kernel.stopping.store(true, Ordering::SeqCst);
    let wait_exit = |secs: u64| {
        let mut rx = kernel.exited.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(secs), rx.wait_for(|e| e.is_some()))
                .await
                .is_ok()
        }
    };
    if let Some(r) = &kernel.remote {
        // The server stops its kernel (DELETE /api/kernels/{id}); the client is then closed,
        // which ends the death watcher.
        if let Err(e) = r.gateway.shutdown(&r.kernel_id).await {
            tracing::warn!("stopping remote kernel: {e}");
        }
        kernel
            .client
            .mark_dead(format!("shut down on {}", r.location()));
        let _ = wait_exit(5).await;
        return;
    }
    if let Ok(mut h) = kernel.client.shutdown_request(false).await {
        let _ = tokio::time::timeout(Duration::from_secs(1), h.next()).await;
    }
    if wait_exit(1).await {
        return;
    }
    // Signal only while the PID is still this kernel (never a process that reused it).
    if !process::is_alive(kernel.pid, kernel.pid_start) {
        return;
    }
    let _ = process::signal_group(kernel.pid, libc::SIGTERM);
    if wait_exit(2).await || !process::is_alive(kernel.pid, kernel.pid_start) {
        return;
    }
    let _ = process::signal_group(kernel.pid, libc::SIGKILL);
    let _ = wait_exit(3).await;
}
