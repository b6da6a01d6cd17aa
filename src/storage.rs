//! Storage health (SPEC §8): the data dir or the notebook root may sit on NFS behind a VPN,
//! where a stale mount makes every file operation hang in the kernel, and no signal ends it.
//!
//! - [`probe`]: a thread of its own writes, fsyncs, reads back and deletes a small file in the
//!   data dir and in the root every `--storage-probe-interval`, each attempt on a thread of
//!   its own bounded by `--storage-timeout`; a hung attempt is abandoned (never joined) and
//!   replaced once it returns.
//! - [`Breaker`]: one per location; opens on a failed or timed-out probe, closes by itself
//!   after the next successful one. It feeds `/health/ready`, `storage_breaker_open` and
//!   `server_status`.
//! - [`Storage::run`] (`bounded`): every storage touch on a tool's path runs on a thread that
//!   may be sacrificed, behind a timeout. While the breaker of its location is open, or while
//!   an earlier call on the same folder is still hung, it fails at once with
//!   [`StorageUnavailable`] instead of adding another stuck thread.
//!
//! Invariant: no storage system call runs on the async runtime without a bound.

mod bounded;
mod probe;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Default `--storage-probe-interval` and `--storage-timeout` (seconds).
pub const DEFAULT_SECONDS: f64 = 5.0;

/// A storage location watched by its own probe and breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Place {
    /// `--data-dir`: `state.db`, assets, checkpoints.
    DataDir,
    /// `--root`: the notebooks.
    Root,
}

impl Place {
    /// `data dir` or `notebook root`, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Place::DataDir => "data dir",
            Place::Root => "notebook root",
        }
    }
}

/// Storage did not answer: what was tried, on which path, and what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "storage is not answering: {what} on {path} {detail}. Check that the file system at {path} \
     is reachable (a stale network mount, a dropped VPN, a full or read-only disk); nothing \
     accepted was lost (finished outputs are kept in memory and written when storage returns); \
     retry when server_status reports storage \"ok\" (or /health/ready answers 200)",
    path = .path.display()
)]
pub struct StorageUnavailable {
    /// The file or folder that did not answer.
    pub path: PathBuf,
    /// What was tried (e.g. "reading the notebook", "the state database").
    pub what: String,
    /// Why we stopped waiting (e.g. "did not answer within 5 s").
    pub detail: String,
}

/// The circuit breaker of one storage location (SPEC §8).
#[derive(Debug)]
pub struct Breaker {
    place: Place,
    path: PathBuf,
    open: AtomicBool,
    state: Mutex<BreakerState>,
    /// Signals every change (true: open), for long calls that stop waiting when it opens.
    signal: tokio::sync::watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct BreakerState {
    reason: Option<String>,
    since: Option<Instant>,
}

impl Breaker {
    fn new(place: Place, path: PathBuf) -> Breaker {
        Breaker {
            place,
            path,
            open: AtomicBool::new(false),
            state: Mutex::new(BreakerState::default()),
            signal: tokio::sync::watch::channel(false).0,
        }
    }

    /// A receiver that sees the breaker open (true) and close (false).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<bool> {
        self.signal.subscribe()
    }

    /// True while the breaker is open (the last probe failed or timed out).
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }

    /// The watched folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why it is open and for how long, or None while closed.
    pub fn reason(&self) -> Option<String> {
        if !self.is_open() {
            return None;
        }
        let st = self.state.lock().ok()?;
        let why = st.reason.clone().unwrap_or_default();
        let secs = st.since.map(|t| t.elapsed().as_secs_f64()).unwrap_or(0.0);
        Some(format!(
            "the {} {} is not answering ({why}; breaker open for {secs:.1} s)",
            self.place.name(),
            self.path.display()
        ))
    }

    fn trip(&self, reason: String) {
        if let Ok(mut st) = self.state.lock() {
            if !self.open.swap(true, Ordering::SeqCst) {
                tracing::warn!(
                    place = self.place.name(),
                    path = %self.path.display(),
                    "storage breaker opened: {reason}; calls that need it fail fast until a probe succeeds"
                );
                st.since = Some(Instant::now());
                self.signal.send_replace(true);
            }
            st.reason = Some(reason);
        }
    }

    fn close(&self) {
        if let Ok(mut st) = self.state.lock() {
            if self.open.swap(false, Ordering::SeqCst) {
                let secs = st.since.map(|t| t.elapsed().as_secs_f64()).unwrap_or(0.0);
                tracing::info!(
                    place = self.place.name(),
                    path = %self.path.display(),
                    "storage answers again; breaker closed after {secs:.1} s"
                );
                self.signal.send_replace(false);
            }
            st.reason = None;
            st.since = None;
        }
    }
}

/// Storage health of one server: the two breakers, the bounds, and the folders with a
/// call still hung in the kernel. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Storage {
    /// `--storage-timeout`: the bound on every storage touch and every probe attempt.
    pub timeout: Duration,
    /// `--storage-probe-interval`: time between probe rounds.
    pub interval: Duration,
    data: Breaker,
    root: Breaker,
    /// Folders with a call that timed out and has not returned yet (count of such calls).
    hung: Mutex<HashMap<PathBuf, usize>>,
    probing: AtomicBool,
}

impl Storage {
    /// Health of `data_dir` and `root`, with the given bounds; probes start with
    /// [`Storage::start_probe`].
    pub fn new(data_dir: &Path, root: &Path, timeout: Duration, interval: Duration) -> Storage {
        Storage {
            timeout,
            interval,
            data: Breaker::new(Place::DataDir, data_dir.to_path_buf()),
            root: Breaker::new(Place::Root, root.to_path_buf()),
            hung: Mutex::new(HashMap::new()),
            probing: AtomicBool::new(false),
        }
    }

    /// The breaker of `place`.
    pub fn breaker(&self, place: Place) -> &Breaker {
        match place {
            Place::DataDir => &self.data,
            Place::Root => &self.root,
        }
    }

    /// Fails at once when the breaker of `place` is open.
    pub fn check(&self, place: Place) -> Result<(), StorageUnavailable> {
        let b = self.breaker(place);
        match b.reason() {
            None => Ok(()),
            Some(why) => Err(StorageUnavailable {
                path: b.path.clone(),
                what: format!("the {}", place.name()),
                detail: format!("failed its last storage probe: {why}"),
            }),
        }
    }

    /// True while either breaker is open.
    pub fn any_open(&self) -> bool {
        self.data.is_open() || self.root.is_open()
    }

    /// `"ok"`, or what is not answering (for `server_status`).
    pub fn state(&self) -> String {
        let reasons = self.not_ready_reasons();
        if reasons.is_empty() {
            "ok".into()
        } else {
            reasons.join("; ")
        }
    }

    /// One line per open breaker (for `/health/ready`).
    pub fn not_ready_reasons(&self) -> Vec<String> {
        [&self.data, &self.root]
            .into_iter()
            .filter_map(|b| b.reason())
            .collect()
    }

    fn publish_gauge(&self) {
        crate::metrics::storage()
            .breaker_open
            .set(i64::from(self.any_open()));
    }
}

static CURRENT: RwLock<Option<Arc<Storage>>> = RwLock::new(None);

/// Makes `storage` the process's storage health, for the parts that have no engine handle
/// (assets, checkpoints). The last engine created wins (one per process outside tests).
pub fn install(storage: Arc<Storage>) {
    if let Ok(mut cur) = CURRENT.write() {
        *cur = Some(storage);
    }
}

/// The process's storage health, if an engine installed one.
pub fn current() -> Option<Arc<Storage>> {
    CURRENT.read().ok()?.clone()
}

/// Runs blocking storage I/O bounded by the process's storage health (see [`Storage::run`]);
/// unbounded on the blocking pool when no engine installed one (unit tests).
pub async fn run_bounded<R: Send + 'static>(
    place: Place,
    path: &Path,
    what: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, StorageUnavailable> {
    match current() {
        Some(s) => s.run(place, path, what, f).await,
        None => tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| StorageUnavailable {
                path: path.to_path_buf(),
                what: what.to_string(),
                detail: format!("failed: the task ended abnormally ({e})"),
            }),
    }
}

/// [`Storage::run_sync`] with the process's storage health; runs `f` directly when no engine
/// installed one (unit tests).
pub fn run_sync_bounded<R: Send + 'static>(
    place: Place,
    path: &Path,
    what: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, StorageUnavailable> {
    match current() {
        Some(s) => s.run_sync(place, path, what, f),
        None => Ok(f()),
    }
}
