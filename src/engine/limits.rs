//! Resource limits on kernels (SPEC §9, issue 11 item 3):
//! - `--max-kernels N`: a kernel start past N (the warm pool's kernels included) fails with
//!   the list of running kernels and how to stop one. The count and the check are one step
//!   under the kernel-states lock ([`super::kernel_states::KernelStates::try_start`]).
//! - `--cull-idle-after D`: a notebook's kernel idle for D (nothing running or queued) is
//!   stopped, after an automatic checkpoint when `--auto-checkpoint` is on; the notebook's
//!   next execution starts a fresh kernel and its note says why and offers the restore.
//! - `--kernel-memory-limit BYTES`: the resident memory of each kernel's process group is
//!   sampled every 250 ms; a kernel past the limit is killed and its execution's error (and
//!   the next execution's note) says so and how to raise the limit. Without a limit the
//!   memory is still sampled every 2 s, so that a kernel killed by SIGKILL from outside
//!   (the kernel's OOM killer) is reported as such, with its memory at the last sample.
//!
//! Why a sampling watchdog rather than `RLIMIT_AS`: the address-space limit counts reserved
//! virtual memory (glibc arenas, BLAS thread stacks, memory maps), which for a scientific
//! Python process is several times its resident memory: a limit in bytes the user can reason
//! about would break `import numpy` long before the memory is used. cgroup v2 `memory.max`
//! is the precise tool but needs a delegated cgroup subtree, which neither this machine
//! (cgroup v1 memory controller) nor an unprivileged pod gives; in a pod the container's own
//! memory limit plays that role.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::session::{self, NotebookSession, RunningKernel};
use super::{Engine, EngineError, EngineResult};
use crate::store;

/// Sampling period of kernel memory with `--kernel-memory-limit`.
const LIMITED_PERIOD: Duration = Duration::from_millis(250);
/// Sampling period without a limit (memory at death, `list_kernels`).
const UNLIMITED_PERIOD: Duration = Duration::from_secs(2);

/// Memory samples and the reasons of kernels this server killed for memory.
#[derive(Default)]
pub struct MemoryWatch {
    /// Kernel PID (= process group) -> resident bytes at the last sample.
    last: Mutex<HashMap<u32, u64>>,
    /// Kernel PID -> why this server killed it (its death watcher reports that instead).
    killed: Mutex<HashMap<u32, String>>,
}

impl MemoryWatch {
    /// Resident bytes of the kernel led by `pid` at the last sample.
    pub fn resident(&self, pid: u32) -> Option<u64> {
        self.last.lock().ok()?.get(&pid).copied()
    }

    /// The reason to report for the exit of the kernel led by `pid`: ours when this server
    /// killed it for memory; for a SIGKILL from elsewhere, `reason` plus the likely cause and
    /// the memory at the last sample; else `reason` unchanged.
    pub fn explain_exit(&self, pid: u32, reason: String) -> String {
        let ours = self.killed.lock().ok().and_then(|mut k| k.remove(&pid));
        let last = self.last.lock().ok().and_then(|mut l| l.remove(&pid));
        if let Some(ours) = ours {
            return ours;
        }
        if reason.contains("signal: 9") {
            let memory = last
                .map(|b| format!("; its resident memory at the last sample was {}", human(b)))
                .unwrap_or_default();
            return format!(
                "{reason}: killed by SIGKILL from outside this server, most likely by the \
                 system's out-of-memory killer{memory}. Work on less data at once, or give \
                 the machine (or the container) more memory"
            );
        }
        reason
    }
}

/// `1.23 GB`-style size (powers of 1000, as the flag's `G` unit).
fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else {
        format!("{:.0} MB", b / 1e6)
    }
}

impl Engine {
    /// Counts a kernel about to start (`kernel_id`, for `notebook`) against `--max-kernels`.
    /// Errors: [`EngineError::KernelLimit`] naming the running kernels and how to stop one.
    pub(super) async fn reserve_kernel_slot(
        &self,
        notebook: &str,
        kernel_id: &str,
    ) -> EngineResult<()> {
        let Some(limit) = self.config().kernels.max_kernels else {
            return Ok(());
        };
        if self.kernel_states().try_start(kernel_id, limit).is_ok() {
            return Ok(());
        }
        let mut running: Vec<String> = Vec::new();
        for s in self.all_sessions() {
            if let Some(k) = s.current_kernel() {
                let state = self
                    .kernel_states()
                    .idle_for(&k.session_id)
                    .map(|d| format!("idle {}", crate::checkpoint::auto::format_duration(d)))
                    .unwrap_or_else(|| k.state());
                running.push(format!(
                    "'{}' ({}, pid {}, {state})",
                    s.path.rel, k.spec.name, k.pid
                ));
            }
        }
        running.sort();
        let pool = self.pool_ready();
        if pool > 0 {
            running.push(format!("{pool} warm pool kernel(s) (--kernel-pool)"));
        }
        Err(EngineError::KernelLimit {
            limit,
            notebook: notebook.to_string(),
            running: running.join(", "),
        })
    }

    /// The memory watch (samples, kills for memory).
    pub(crate) fn memory_watch(&self) -> &Arc<MemoryWatch> {
        &self.inner.memory
    }

    /// Starts the limit tasks: the memory watchdog always (it also feeds the OOM report),
    /// the idle culler when `--cull-idle-after` is set. They run until the runtime stops.
    pub fn spawn_limit_tasks(&self) {
        let engine = self.clone();
        tokio::spawn(async move { watch_memory(engine).await });
        if let Some(after) = self.config().kernels.cull_idle_after {
            let engine = self.clone();
            tokio::spawn(async move { cull_idle(engine, after).await });
        }
    }

    /// Kernels of notebooks now: (session, kernel).
    fn live_kernels(&self) -> Vec<(Arc<NotebookSession>, Arc<RunningKernel>)> {
        self.all_sessions()
            .into_iter()
            .filter_map(|s| {
                let k = s.current_kernel()?;
                Some((s, k))
            })
            .collect()
    }

    /// Stops `kernel` of `session` if it is still the session's kernel and still idle for
    /// at least `after` with nothing running or queued, all checked under the lifecycle lock
    /// (so no execution can be sent to it meanwhile). True when it was stopped.
    async fn cull_if_idle(
        &self,
        session: &Arc<NotebookSession>,
        kernel: &Arc<RunningKernel>,
        after: Duration,
    ) -> EngineResult<bool> {
        let _l = session.lifecycle.lock().await;
        let same = session
            .current_kernel()
            .is_some_and(|k| Arc::ptr_eq(&k, kernel));
        let idle = self
            .kernel_states()
            .idle_for(&kernel.session_id)
            .is_some_and(|d| d >= after);
        if !same || !idle || session.running().is_some() {
            return Ok(false);
        }
        let nb = session.path.rel.clone();
        let pending = self
            .store()
            .call(move |c| store::executions::pending_count(c, &nb))
            .await?;
        if pending > 0 {
            return Ok(false);
        }
        let Some(k) = session.kernel.lock().ok().and_then(|mut k| k.take()) else {
            return Ok(false);
        };
        session::stop_kernel(&k).await;
        self.kernel_state(&session.path.rel, &k.session_id, "shutdown", k.pid_opt());
        let why = format!(
            "it was stopped after {} idle (--cull-idle-after)",
            crate::checkpoint::auto::format_duration(after)
        );
        if let Ok(mut note) = session.death_note.lock() {
            *note = Some(why.clone());
        }
        let id = k.session_id.clone();
        let reason = format!("culled: {why}");
        let _ = self
            .store()
            .call(move |c| store::sessions::end_session(c, &id, "shutdown", &reason))
            .await;
        tracing::info!(notebook = %session.path.rel, pid = k.pid, "{why}");
        Ok(true)
    }
}

/// Samples the resident memory of every notebook kernel; kills those past the limit.
async fn watch_memory(engine: Engine) {
    let limit = engine.config().kernels.memory_limit;
    let period = if limit.is_some() {
        LIMITED_PERIOD
    } else {
        UNLIMITED_PERIOD
    };
    let mut timer = tokio::time::interval(period);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        timer.tick().await;
        // Remote kernels have no local process to sample (their server bounds them).
        let kernels: Vec<_> = engine
            .live_kernels()
            .into_iter()
            .filter(|(_, k)| k.remote.is_none())
            .collect();
        let pids: Vec<u32> = kernels.iter().map(|(_, k)| k.pid).collect();
        let Ok(sample) =
            tokio::task::spawn_blocking(move || jmcp_kernel::memory::group_resident_bytes(&pids))
                .await
        else {
            continue;
        };
        let watch = engine.memory_watch();
        if let Ok(mut last) = watch.last.lock() {
            last.retain(|pid, _| sample.contains_key(pid));
            last.extend(sample.iter().map(|(p, b)| (*p, *b)));
        }
        let Some(limit) = limit else { continue };
        for (session, kernel) in kernels {
            let Some(&used) = sample.get(&kernel.pid) else {
                continue;
            };
            if used <= limit || kernel.stopping.load(std::sync::atomic::Ordering::SeqCst) {
                continue;
            }
            let why = format!(
                "the kernel was stopped because its memory ({} resident, with its child \
                 processes) passed --kernel-memory-limit ({}): its variables are gone. Work on \
                 less data at once, or restart the server with a higher --kernel-memory-limit",
                human(used),
                human(limit)
            );
            tracing::warn!(notebook = %session.path.rel, pid = kernel.pid, "{why}");
            if let Ok(mut killed) = watch.killed.lock() {
                killed.insert(kernel.pid, why);
            }
            let _ = jmcp_kernel::process::signal_group(kernel.pid, libc::SIGKILL);
        }
    }
}

/// Stops notebook kernels idle for `after` (auto-checkpoint first when enabled).
async fn cull_idle(engine: Engine, after: Duration) {
    let tick = (after / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
    let mut timer = tokio::time::interval(tick);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        timer.tick().await;
        for (session, kernel) in engine.live_kernels() {
            let idle = engine
                .kernel_states()
                .idle_for(&kernel.session_id)
                .is_some_and(|d| d >= after);
            if !idle || session.running().is_some() {
                continue;
            }
            if engine.config().auto_checkpoint {
                let nb = session.path.rel.clone();
                if let Err(e) = crate::checkpoint::auto::save_before_cull(&engine, &nb).await {
                    tracing::warn!(
                        "kept the idle kernel of {nb}: its automatic checkpoint failed ({e})"
                    );
                    continue;
                }
            }
            if let Err(e) = engine.cull_if_idle(&session, &kernel, after).await {
                tracing::warn!(
                    "could not stop the idle kernel of {}: {e}",
                    session.path.rel
                );
            }
        }
    }
}
