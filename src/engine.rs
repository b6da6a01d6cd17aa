//! The engine: notebooks, kernels and executions, independent of any transport. The MCP layer
//! and the headless `run` command both drive it.
//!
//! Invariants:
//! - an execution's row is committed in `state.db` before its id is returned and before the
//!   kernel receives its code;
//! - executions of one notebook run one at a time, in submission order (one worker per notebook);
//!   different notebooks run in parallel;
//! - every execution ends in memory even when the store refuses the write; the write is
//!   retried (`unrecorded.rs`); a panicking worker is restarted on the same queue (`supervise.rs`);
//! - waiting for a result is signalled through `watch` channels, never polled;
//! - std mutexes guard short critical sections only and are never held across `.await`.

mod bound;
mod cells;
mod error;
mod internal;
mod interrupts;
mod jobs;
mod kernel_states;
mod kernels;
mod limits;
mod live;
mod notebook_ops;
mod ops;
mod pool;
mod recover;
mod remote;
mod retire;
mod session;
mod supervise;
mod testhooks;
mod unrecorded;
mod views;
mod widgets;
mod worker;
mod writeback;

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use cells::Position;
pub use error::{EngineError, EngineResult};
pub use internal::InternalRun;
pub use recover::{RecoverMode, RecoveryReport};
pub use views::{CellView, ExecutionView, KernelView, SubmitItem};

use crate::config::Config;
use crate::events::EventHub;
use crate::paths::RootedPath;
use crate::store::Store;
use live::LiveRegistry;
use session::NotebookSession;

/// Handle to the engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    store: Store,
    live: LiveRegistry,
    sessions: Mutex<HashMap<String, Arc<NotebookSession>>>,
    unrecorded: unrecorded::Unrecorded,
    /// `/events` fan-out (SPEC §7); one per engine.
    events: EventHub,
    /// When the engine was created (`server_status` uptime).
    started: Instant,
    /// MCP sessions open now; the HTTP transport counts them (stdio has one).
    mcp_sessions: Arc<AtomicUsize>,
    /// Kernels by state, for `kernels{state}` and `server_status`.
    kernel_states: Arc<kernel_states::KernelStates>,
    /// The warm kernel pool (`--kernel-pool`).
    pool: pool::KernelPool,
    /// Storage health: probe, breakers, bounded calls (SPEC §8).
    storage: Arc<crate::storage::Storage>,
    /// Kernel memory samples and kills for `--kernel-memory-limit` (`limits.rs`).
    memory: Arc<limits::MemoryWatch>,
    /// Set by a graceful shutdown: workers start no queued execution any more (their rows
    /// stay `pending` in `state.db` and run after the next start).
    hold_queued: std::sync::atomic::AtomicBool,
}

impl Engine {
    /// Opens the store under the data dir (creating it) and returns an idle engine.
    pub fn new(config: Config) -> EngineResult<Engine> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| {
            crate::store::StoreError::DataDir {
                path: config.data_dir.clone(),
                source,
            }
        })?;
        let storage = Arc::new(crate::storage::Storage::new(
            &config.data_dir,
            config.root.path(),
            config.storage.timeout,
            config.storage.probe_interval,
        ));
        crate::storage::install(storage.clone());
        let store = Store::open(&config.db_path())?.with_storage(storage.clone());
        let events = EventHub::default();
        Ok(Engine {
            inner: Arc::new(Inner {
                config,
                store,
                live: LiveRegistry::new(events.clone()),
                events,
                started: Instant::now(),
                mcp_sessions: Arc::new(AtomicUsize::new(0)),
                kernel_states: Default::default(),
                pool: Default::default(),
                memory: Default::default(),
                hold_queued: Default::default(),
                sessions: Mutex::new(HashMap::new()),
                unrecorded: Default::default(),
                storage,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The durable store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Storage health (SPEC §8): breakers, bounded calls.
    pub fn storage(&self) -> &Arc<crate::storage::Storage> {
        &self.inner.storage
    }

    /// Starts the storage probe thread (servers only: `serve`, both transports).
    pub fn start_storage_probe(&self) {
        self.inner.storage.start_probe();
    }

    /// The event hub (`/events`).
    pub fn events(&self) -> &EventHub {
        &self.inner.events
    }

    /// When this engine was created.
    pub fn started(&self) -> Instant {
        self.inner.started
    }

    /// Open MCP sessions: the HTTP transport increments and decrements this counter as
    /// sessions open and close; `server_status` reads it (stdio reports its one session).
    pub fn mcp_sessions(&self) -> &Arc<AtomicUsize> {
        &self.inner.mcp_sessions
    }

    /// From now on no queued execution starts: graceful shutdown lets the running ones finish
    /// (`--shutdown-grace`) while the queued ones stay `pending` in `state.db`, durable, and
    /// run after the next start, rather than starting now only to be cut off at the deadline.
    pub fn hold_queued_executions(&self) {
        self.inner
            .hold_queued
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// True once [`Engine::hold_queued_executions`] was called.
    pub(crate) fn queued_held(&self) -> bool {
        self.inner
            .hold_queued
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Executions pending in this engine, all notebooks.
    pub fn queue_depth(&self) -> usize {
        self.inner.live.queue_depth()
    }

    /// Kernels of this engine by state (`starting`, `idle`, `busy`, `pool`).
    pub fn kernels_by_state(&self) -> std::collections::BTreeMap<String, usize> {
        self.inner.kernel_states.by_state()
    }

    pub(crate) fn kernel_states(&self) -> &Arc<kernel_states::KernelStates> {
        &self.inner.kernel_states
    }

    pub(crate) fn pool(&self) -> &pool::KernelPool {
        &self.inner.pool
    }

    pub(crate) fn live(&self) -> &LiveRegistry {
        &self.inner.live
    }

    /// Terminal states the store refused, kept for a retry.
    pub(crate) fn unrecorded(&self) -> &unrecorded::Unrecorded {
        &self.inner.unrecorded
    }

    /// Resolves a notebook path under the root (blocking: resolving symlinks touches the
    /// file system; async callers use [`Engine::resolve_notebook`]).
    pub fn notebook_path(&self, notebook: &str) -> EngineResult<RootedPath> {
        Ok(self.inner.config.root.notebook(notebook)?)
    }

    /// Resolves a notebook path under the root, bounded by `--storage-timeout` (resolving
    /// symlinks stats the file system, which hangs on a stale mount). Errors: the path is
    /// refused, or the root does not answer ([`EngineError::Storage`]).
    pub async fn resolve_notebook(&self, notebook: &str) -> EngineResult<RootedPath> {
        let root = self.inner.config.root.clone();
        let target = root.path().join(notebook.trim());
        let owned = notebook.to_string();
        crate::storage::run_bounded(
            crate::storage::Place::Root,
            &target,
            "resolving the notebook path",
            move || root.notebook(&owned),
        )
        .await?
        .map_err(Into::into)
    }

    /// True when the notebook file exists, bounded by `--storage-timeout` (a stat on a stale
    /// mount hangs). Errors: the root does not answer ([`EngineError::Storage`]).
    pub async fn notebook_exists(&self, path: &RootedPath) -> EngineResult<bool> {
        let abs = path.abs.clone();
        Ok(crate::storage::run_bounded(
            crate::storage::Place::Root,
            &path.abs,
            "looking for the notebook",
            move || abs.exists(),
        )
        .await?)
    }

    /// The path of a notebook that already has a session, found without touching storage
    /// (lexical match of the root-relative path): lets calls that need no storage
    /// (`interrupt_kernel`) answer while the root does not.
    pub fn known_notebook_path(&self, notebook: &str) -> Option<RootedPath> {
        let root = self.inner.config.root.path();
        let given = std::path::Path::new(notebook.trim());
        let rel = given.strip_prefix(root).unwrap_or(given);
        let mut parts: Vec<String> = Vec::new();
        for c in rel.components() {
            match c {
                std::path::Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
                std::path::Component::ParentDir => {
                    parts.pop()?;
                }
                std::path::Component::CurDir => {}
                _ => return None,
            }
        }
        self.existing_session(&parts.join("/"))
            .map(|s| s.path.clone())
    }

    /// The session of a notebook, created (with its worker) on first use.
    fn session(&self, path: &RootedPath) -> Arc<NotebookSession> {
        let mut sessions = match self.inner.sessions.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(s) = sessions.get(&path.rel) {
            return s.clone();
        }
        let (session, rx) = NotebookSession::new(path.clone());
        sessions.insert(path.rel.clone(), session.clone());
        tokio::spawn(supervise::run(self.clone(), session.clone(), rx));
        session
    }

    fn existing_session(&self, rel: &str) -> Option<Arc<NotebookSession>> {
        self.inner.sessions.lock().ok()?.get(rel).cloned()
    }

    fn all_sessions(&self) -> Vec<Arc<NotebookSession>> {
        self.inner
            .sessions
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }
}
