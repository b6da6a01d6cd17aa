//! The warm kernel pool (`serve --kernel-pool N`, issue 10 item 9): N kernels of the default
//! kernelspec started ahead and kept idle, so the first execution of a new notebook claims one
//! instead of waiting for a kernel to boot.
//!
//! - A pool kernel is started exactly as `session::launch_kernel` starts a notebook's kernel
//!   (same launcher, Landlock confinement away from the data dir, `checkpoints/` created, the
//!   done hook installed), in a neutral working folder: the private runtime folder.
//! - It is recorded in `state.db` (`kernel_sessions`) with the empty notebook
//!   [`POOL_NOTEBOOK`] and state `pool`, so a crash cannot leak it: recovery at the next start
//!   stops such kernels ([`reap_previous`]) instead of adopting them.
//! - [`claim`] hands one to a notebook: `os.chdir(<notebook folder>)` runs in it, its row is
//!   moved to the notebook (state `idle`), it gets the notebook session's death watcher, and a
//!   replacement starts in the background.
//! - Pool kernels are not listed by `list_kernels` (they belong to no notebook); they count in
//!   `kernels{state="pool"}` and `server_status`. They are stopped whenever the server exits
//!   ([`drain`]), with or without `--stop-kernels-on-exit`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jmcp_kernel::launch::LaunchOptions;
use jmcp_kernel::{process, start_kernel, ExecuteOptions, KernelEvent, KernelSpec, StartedKernel};
use serde_json::Value;

use super::session::{self, NotebookSession, RunningKernel};
use super::Engine;
use crate::store::{self, KernelSessionRecord};

/// The `notebook` of a pool kernel's `kernel_sessions` row (no notebook path is empty).
pub const POOL_NOTEBOOK: &str = "";

/// After a failed pool start, wait this long before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// The engine's warm pool.
#[derive(Default)]
pub struct KernelPool {
    ready: Mutex<Vec<Pooled>>,
    /// Kernels to keep ready.
    target: AtomicUsize,
    /// Set by [`drain`]: nothing is started or handed out any more.
    closed: AtomicBool,
    /// Held while a refill starts a kernel (one refill at a time; [`drain`] waits for it).
    refill: tokio::sync::Mutex<()>,
}

/// One ready kernel.
struct Pooled {
    started: StartedKernel,
    spec: KernelSpec,
    record: KernelSessionRecord,
}

impl KernelPool {
    /// Kernels ready now.
    pub fn len(&self) -> usize {
        self.ready.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// Kernels the pool keeps ready (`--kernel-pool`).
    pub fn target(&self) -> usize {
        self.target.load(Ordering::Relaxed)
    }

    fn take_matching(&self, spec: &KernelSpec) -> Option<Pooled> {
        let mut ready = self.ready.lock().ok()?;
        let i = ready
            .iter()
            .position(|p| p.spec.name == spec.name && p.spec.argv == spec.argv)?;
        Some(ready.remove(i))
    }
}

impl Engine {
    /// Keeps `n` kernels of the default kernelspec started and idle (`--kernel-pool N`); they
    /// start in the background.
    pub fn start_kernel_pool(&self, n: usize) {
        // Remote kernels are the gateway's to pool (Enterprise Gateway has its own).
        let n = if self.config().gateway.is_some() {
            0
        } else {
            n
        };
        self.pool().target.store(n, Ordering::Relaxed);
        if n > 0 {
            spawn_refill(self);
        }
    }

    /// Kernels of the warm pool ready now.
    pub fn pool_ready(&self) -> usize {
        self.pool().len()
    }

    /// PIDs of the warm pool's ready kernels.
    pub fn pool_pids(&self) -> Vec<u32> {
        self.pool()
            .ready
            .lock()
            .map(|r| r.iter().map(|p| p.started.launched.pid).collect())
            .unwrap_or_default()
    }

    /// Kernels the warm pool keeps ready (`--kernel-pool`; 0: no pool).
    pub fn pool_target(&self) -> usize {
        self.pool().target()
    }
}

fn spawn_refill(engine: &Engine) {
    let engine = engine.clone();
    tokio::spawn(async move { refill(&engine).await });
}

/// Starts kernels until the pool holds its target (one refill at a time).
async fn refill(engine: &Engine) {
    let pool = engine.pool();
    let _one = pool.refill.lock().await;
    while !pool.closed.load(Ordering::SeqCst) && pool.len() < pool.target() {
        match start_one(engine).await {
            Ok(p) => {
                if pool.closed.load(Ordering::SeqCst) {
                    stop_pooled(engine, p, "stopped: the server was exiting").await;
                    return;
                }
                if let Ok(mut r) = pool.ready.lock() {
                    r.push(p);
                }
            }
            Err(e) => {
                match e {
                    NotStarted::AtLimit => tracing::debug!(
                        "the warm pool waits: --max-kernels is reached; trying again in {} s",
                        RETRY_AFTER.as_secs()
                    ),
                    NotStarted::Failed(e) => tracing::warn!(
                        "could not start a warm pool kernel ({e}); notebooks start their own kernels; trying again in {} s",
                        RETRY_AFTER.as_secs()
                    ),
                }
                drop(_one);
                tokio::time::sleep(RETRY_AFTER).await;
                if !pool.closed.load(Ordering::SeqCst) {
                    spawn_refill(engine);
                }
                return;
            }
        }
    }
}

/// Why a pool kernel was not started.
enum NotStarted {
    /// `--max-kernels` is reached: the pool waits for its next claim.
    AtLimit,
    /// The start failed (the message says why); retried later.
    Failed(String),
}

impl From<String> for NotStarted {
    fn from(why: String) -> Self {
        NotStarted::Failed(why)
    }
}

/// Starts one pool kernel: launched like a notebook's kernel, counted against
/// `--max-kernels`, recorded as a pool kernel.
async fn start_one(engine: &Engine) -> Result<Pooled, NotStarted> {
    let cfg = engine.config();
    let spec = jmcp_kernel::find_kernelspec(&cfg.default_kernel).map_err(|e| e.to_string())?;
    let (checkpoints, _) = session::prepare_data_dir(engine)
        .await
        .map_err(|e| e.to_string())?;
    let runtime_dir = cfg.kernels_dir();
    let opts = LaunchOptions {
        // Neutral: no notebook's folder; the claim moves the kernel to its notebook's folder.
        cwd: runtime_dir.clone(),
        runtime_dir,
        hide: vec![cfg.data_dir.clone()],
        hide_except: vec![checkpoints],
    };
    let id = uuid::Uuid::new_v4().to_string();
    if let Some(limit) = cfg.kernels.max_kernels {
        if engine.kernel_states().try_start(&id, limit).is_err() {
            return Err(NotStarted::AtLimit);
        }
    }
    let started = match start_kernel(&spec, &opts, cfg.kernel_start_timeout).await {
        Ok(s) => s,
        Err(e) => {
            engine.kernel_states().forget(&id);
            return Err(e.to_string().into());
        }
    };
    let launched = &started.launched;
    let record = session::launched_record(&id, POOL_NOTEBOOK, &spec, launched, "pool");
    let rec = record.clone();
    let pooled = Pooled {
        started,
        spec,
        record,
    };
    if let Err(e) = engine.store().call(move |c| rec.insert(c)).await {
        let why = format!("could not record it in state.db: {e}");
        kill_pooled(pooled).await;
        engine.kernel_states().forget(&id);
        return Err(why.into());
    }
    if pooled.spec.is_ipykernel() {
        session::install_done_hook(&pooled.started.client).await;
    }
    let pid = pooled.started.launched.pid;
    engine.kernel_state(POOL_NOTEBOOK, &pooled.record.id, "pool", Some(pid));
    Ok(pooled)
}

/// Hands a ready kernel of `spec` to `session`, moved to `cwd` (the notebook's folder).
/// `None` when the pool has none (or the one it had failed the move): the caller starts one.
pub(super) async fn claim(
    engine: &Engine,
    session: &Arc<NotebookSession>,
    spec: &KernelSpec,
    cwd: &Path,
) -> Option<Arc<RunningKernel>> {
    let pool = engine.pool();
    if pool.target() == 0 || pool.closed.load(Ordering::SeqCst) {
        return None;
    }
    let folder = cwd.to_str()?;
    let pooled = pool.take_matching(spec)?;
    spawn_refill(engine);
    let launched = &pooled.started.launched;
    let (pid, start) = (launched.pid, launched.start_time);
    if !process::is_alive(pid, start) || pooled.started.client.dead_reason().is_some() {
        tracing::warn!("a warm pool kernel (pid {pid}) had died; starting a fresh kernel");
        stop_pooled(engine, pooled, "died while in the warm pool").await;
        return None;
    }
    if let Err(e) = change_dir(&pooled.started.client, folder).await {
        tracing::warn!("could not move a warm pool kernel (pid {pid}) to {folder}: {e}; starting a fresh kernel");
        stop_pooled(
            engine,
            pooled,
            "could not be moved to its notebook's folder",
        )
        .await;
        return None;
    }
    let mut record = pooled.record.clone();
    record.notebook = session.path.rel.clone();
    record.state = "idle".into();
    let (id, nb) = (record.id.clone(), record.notebook.clone());
    let moved = engine
        .store()
        .call(move |c| {
            c.execute(
                "UPDATE kernel_sessions SET notebook = ?2, state = 'idle' WHERE id = ?1",
                rusqlite::params![id, nb],
            )?;
            Ok(())
        })
        .await;
    if let Err(e) = moved {
        tracing::warn!(
            "could not record the claim of a warm pool kernel: {e}; starting a fresh kernel"
        );
        stop_pooled(engine, pooled, "its claim could not be recorded").await;
        return None;
    }
    engine.kernel_state(&record.notebook, &record.id, "idle", Some(pid));
    tracing::info!(notebook = %record.notebook, pid, "claimed a warm pool kernel");
    let Pooled { started, spec, .. } = pooled;
    Some(session::install_started(
        engine,
        session,
        &spec,
        &record,
        started.launched,
        started.client,
        started.kernel_info,
    ))
}

/// Runs `os.chdir(folder)` in the kernel (silently, nothing left in its namespace) and waits
/// for its reply and idle.
async fn change_dir(client: &jmcp_kernel::KernelClient, folder: &str) -> Result<(), String> {
    let literal = serde_json::to_string(folder).map_err(|e| e.to_string())?;
    // sys.path entries naming the old folder (a kernel started with `python -m` may have
    // one; ipykernel keeps '') follow the move, so local imports resolve as in a kernel
    // started in the notebook's folder.
    let code = format!(
        "def __jmcp_cd(d):\n    import os, sys\n    old = os.getcwd()\n    os.chdir(d)\n    sys.path[:] = [d if p == old else p for p in sys.path]\n__jmcp_cd({literal})\ndel __jmcp_cd"
    );
    let opts = ExecuteOptions {
        store_history: false,
        allow_stdin: false,
        stop_on_error: false,
        silent: true,
    };
    let mut h = client
        .execute(&code, opts, None)
        .await
        .map_err(|e| e.to_string())?;
    let wait = async {
        let (mut reply, mut idle) = (None::<Value>, false);
        while reply.is_none() || !idle {
            match h.next().await {
                KernelEvent::Message(m) if m.msg_type == "execute_reply" => reply = Some(m.content),
                KernelEvent::Message(m) => idle |= m.execution_state() == Some("idle"),
                KernelEvent::Died(r) => return Err(r),
            }
        }
        match reply
            .as_ref()
            .and_then(|r| r.get("status"))
            .and_then(Value::as_str)
        {
            Some("ok") => Ok(()),
            _ => Err(format!(
                "the kernel refused: {}",
                reply
                    .as_ref()
                    .and_then(|r| r.get("evalue"))
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given")
            )),
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .map_err(|_| "no answer within 10 s".to_string())?
}

/// Stops every pool kernel and starts no more (the server is exiting). Waits for a refill in
/// progress, so no kernel it was starting is left behind.
pub(super) async fn drain(engine: &Engine) {
    let pool = engine.pool();
    pool.closed.store(true, Ordering::SeqCst);
    let _refill = pool.refill.lock().await;
    let ready: Vec<Pooled> = pool
        .ready
        .lock()
        .map(|mut r| std::mem::take(&mut *r))
        .unwrap_or_default();
    futures::future::join_all(
        ready
            .into_iter()
            .map(|p| stop_pooled(engine, p, "warm pool kernel stopped when the server exited")),
    )
    .await;
}

/// Stops a pool kernel and ends its row.
async fn stop_pooled(engine: &Engine, p: Pooled, why: &str) {
    let id = p.record.id.clone();
    kill_pooled(p).await;
    engine.kernel_states().forget(&id);
    let why = why.to_string();
    let _ = engine
        .store()
        .call(move |c| store::sessions::end_session(c, &id, "shutdown", &why))
        .await;
}

/// `shutdown_request`, then SIGTERM, then SIGKILL to the kernel's process group, waiting for
/// the process to exit at each step.
async fn kill_pooled(mut p: Pooled) {
    let launched = &mut p.started.launched;
    if let Ok(mut h) = p.started.client.shutdown_request(false).await {
        let _ = tokio::time::timeout(Duration::from_secs(1), h.next()).await;
    }
    for (signal, secs) in [(0, 1), (libc::SIGTERM, 2), (libc::SIGKILL, 3)] {
        if signal != 0 && process::is_alive(launched.pid, launched.start_time) {
            let _ = process::signal_group(launched.pid, signal);
        }
        let waited = tokio::time::timeout(Duration::from_secs(secs), launched.child.wait()).await;
        if waited.is_ok() {
            break;
        }
    }
    let _ = std::fs::remove_file(&launched.connection_file);
}

/// Pool kernels of a previous server process (rows with [`POOL_NOTEBOOK`] not ended): stopped
/// (SIGTERM, then SIGKILL, only while the PID is still that kernel) and their rows ended.
pub(super) async fn reap_previous(engine: &Engine, records: Vec<KernelSessionRecord>) {
    for rec in records {
        if let Some(pid) = rec.pid {
            if process::is_alive(pid, rec.pid_start_time) {
                let _ = process::signal_group(pid, libc::SIGTERM);
                let exited = tokio::time::timeout(
                    Duration::from_secs(2),
                    process::wait_for_exit(pid, rec.pid_start_time),
                )
                .await;
                if exited.is_err() && process::is_alive(pid, rec.pid_start_time) {
                    let _ = process::signal_group(pid, libc::SIGKILL);
                }
                tracing::info!(pid, "stopped a warm pool kernel left by a previous server");
            }
        }
        if let Some(f) = &rec.connection_file {
            let _ = std::fs::remove_file(f);
        }
        let id = rec.id.clone();
        let _ = engine
            .store()
            .call(move |c| {
                store::sessions::end_session(
                    c,
                    &id,
                    "shutdown",
                    "warm pool kernel of a previous server process",
                )
            })
            .await;
    }
}
