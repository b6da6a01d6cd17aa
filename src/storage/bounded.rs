//! Bounded storage calls: blocking I/O on a thread that may be sacrificed, behind
//! `--storage-timeout`. A call that times out is abandoned (its thread stays stuck in the
//! kernel until the file system answers) and its folder is remembered as hung until it
//! returns: further calls under that folder fail at once instead of adding stuck threads, so
//! a frozen mount holds at most a few threads, and calls on healthy folders go on.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::{Place, Storage, StorageUnavailable};

/// Where a bounded call stands, shared by the caller and the thread running it.
enum CallState {
    Running,
    /// The caller gave up; the thread must unregister the hung folder when it returns.
    Abandoned,
    Done,
}

impl Storage {
    /// Runs `f` (blocking file or database I/O on `path`, in `place`) on the blocking pool
    /// and waits at most `--storage-timeout` for it.
    ///
    /// Errors ([`StorageUnavailable`], naming `path` and `what`): the breaker of `place` is
    /// open; an earlier call under the same folder is still hung; `f` did not return in
    /// time (it is abandoned, never joined); the task panicked.
    pub async fn run<R: Send + 'static>(
        self: &Arc<Self>,
        place: Place,
        path: &Path,
        what: &str,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, StorageUnavailable> {
        self.run_for(place, path, what, self.timeout, f).await
    }

    /// [`Storage::run`] with its own bound, for work whose length grows with its size
    /// (checkpoint files): it also stops waiting as soon as the breaker of `place` opens.
    pub async fn run_for<R: Send + 'static>(
        self: &Arc<Self>,
        place: Place,
        path: &Path,
        what: &str,
        bound: std::time::Duration,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, StorageUnavailable> {
        let mut opened = self.breaker(place).subscribe();
        let key = self.admit(place, path, what)?;
        let state = Arc::new(Mutex::new(CallState::Running));
        let (tx, rx) = oneshot::channel();
        let (me, st, k) = (self.clone(), state.clone(), key.clone());
        // spawn_blocking: a stuck job costs one thread of the blocking pool, never a worker
        // of the async runtime; the hung-folder check above bounds how many can pile up.
        tokio::task::spawn_blocking(move || {
            let r = f();
            me.settle(&st, &k);
            let _ = tx.send(r);
        });
        let mut rx = rx;
        let outcome = tokio::select! {
            r = tokio::time::timeout(bound, &mut rx) => r.map_err(|_| format!("did not answer within {} s", bound.as_secs_f64())),
            _ = opened.wait_for(|open| *open) => Err(format!(
                "stopped waiting: the {} failed its storage probe meanwhile", place.name()
            )),
        };
        match outcome {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(StorageUnavailable {
                path: path.to_path_buf(),
                what: what.to_string(),
                detail: "failed: the I/O task ended abnormally".into(),
            }),
            Err(detail) => {
                if self.give_up(&state, &key) {
                    if let Ok(r) = rx.try_recv() {
                        return Ok(r);
                    }
                }
                tracing::warn!(path = %path.display(), "{what} {detail}; abandoned");
                Err(StorageUnavailable {
                    path: path.to_path_buf(),
                    what: what.to_string(),
                    detail,
                })
            }
        }
    }

    /// [`Storage::run`] for blocking contexts (asset writes during result rendering, which
    /// runs on the blocking pool): `f` runs on a new std thread, waited for at most
    /// `--storage-timeout` and abandoned after. Same errors as [`Storage::run`].
    pub fn run_sync<R: Send + 'static>(
        self: &Arc<Self>,
        place: Place,
        path: &Path,
        what: &str,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, StorageUnavailable> {
        let key = self.admit(place, path, what)?;
        let state = Arc::new(Mutex::new(CallState::Running));
        let (tx, rx) = std::sync::mpsc::channel();
        let (me, st, k) = (self.clone(), state.clone(), key.clone());
        std::thread::Builder::new()
            .name("jmcp-storage-io".into())
            .spawn(move || {
                let r = f();
                me.settle(&st, &k);
                let _ = tx.send(r);
            })
            .map_err(|e| StorageUnavailable {
                path: path.to_path_buf(),
                what: what.to_string(),
                detail: format!("was not tried: cannot start a thread ({e})"),
            })?;
        match rx.recv_timeout(self.timeout) {
            Ok(r) => Ok(r),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(StorageUnavailable {
                path: path.to_path_buf(),
                what: what.to_string(),
                detail: "failed: the I/O thread ended abnormally".into(),
            }),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if self.give_up(&state, &key) {
                    if let Ok(r) = rx.try_recv() {
                        return Ok(r);
                    }
                }
                tracing::warn!(path = %path.display(), "{what} did not answer within {:.1} s; abandoned", self.timeout.as_secs_f64());
                Err(StorageUnavailable {
                    path: path.to_path_buf(),
                    what: what.to_string(),
                    detail: format!("did not answer within {} s", self.timeout.as_secs_f64()),
                })
            }
        }
    }

    /// Refuses a call at once when the breaker of `place` is open or a call under the folder
    /// of `path` is hung; else returns that folder (the key of [`Storage::hang`]).
    fn admit(&self, place: Place, path: &Path, what: &str) -> Result<PathBuf, StorageUnavailable> {
        self.check(place).map_err(|mut e| {
            e.what = what.to_string();
            e
        })?;
        let key = folder_of(path);
        if let Some((hung, n)) = self.hung_above(&key) {
            return Err(StorageUnavailable {
                path: path.to_path_buf(),
                what: what.to_string(),
                detail: format!(
                    "was not tried: {n} earlier call(s) under {} have not returned for over {} s",
                    hung.display(),
                    self.timeout.as_secs_f64()
                ),
            });
        }
        Ok(key)
    }

    /// Run by the I/O thread when its call returns: the call is done, and its folder is no
    /// longer hung if the caller had abandoned it.
    fn settle(&self, state: &Mutex<CallState>, key: &Path) {
        if let Ok(mut s) = state.lock() {
            if matches!(*s, CallState::Abandoned) {
                self.unhang(key);
            }
            *s = CallState::Done;
        }
    }

    /// The caller stops waiting: a call still running is abandoned and its folder marked
    /// hung (false); true when it returned meanwhile, so its result can still be taken.
    fn give_up(&self, state: &Mutex<CallState>, key: &Path) -> bool {
        let Ok(mut s) = state.lock() else {
            return false;
        };
        match *s {
            CallState::Running => {
                *s = CallState::Abandoned;
                self.hang(key);
                false
            }
            CallState::Done | CallState::Abandoned => true,
        }
    }

    /// The hung folder at or above `folder`, with its count of stuck calls.
    fn hung_above(&self, folder: &Path) -> Option<(PathBuf, usize)> {
        let hung = self.hung.lock().ok()?;
        hung.iter()
            .find(|(k, n)| **n > 0 && folder.starts_with(k))
            .map(|(k, n)| (k.clone(), *n))
    }

    fn hang(&self, folder: &Path) {
        if let Ok(mut hung) = self.hung.lock() {
            *hung.entry(folder.to_path_buf()).or_insert(0) += 1;
        }
    }

    fn unhang(&self, folder: &Path) {
        if let Ok(mut hung) = self.hung.lock() {
            if let Some(n) = hung.get_mut(folder) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    hung.remove(folder);
                }
            }
        }
    }

    /// Calls abandoned and still stuck, all folders (for tests and figures).
    pub fn hung_calls(&self) -> usize {
        self.hung.lock().map(|h| h.values().sum()).unwrap_or(0)
    }
}

/// The folder a call on `path` is accounted to: `path` itself when it names a folder we
/// know (no system call is made to find out), else its parent.
fn folder_of(path: &Path) -> PathBuf {
    let is_file = path
        .extension()
        .is_some_and(|e| e == "ipynb" || e == "db" || e == "json" || e == "dill");
    if is_file {
        path.parent().unwrap_or(path).to_path_buf()
    } else {
        path.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn storage(timeout_ms: u64) -> Arc<Storage> {
        Arc::new(Storage::new(
            Path::new("/data"),
            Path::new("/root"),
            Duration::from_millis(timeout_ms),
            Duration::from_secs(5),
        ))
    }

    #[tokio::test]
    async fn a_hung_call_is_abandoned_and_its_folder_fails_fast_until_it_returns() {
        let s = storage(100);
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let err = s
            .run(
                Place::Root,
                Path::new("/root/sub/a.ipynb"),
                "reading",
                move || {
                    wait.recv().ok();
                },
            )
            .await
            .unwrap_err();
        assert!(err.detail.contains("did not answer"), "{err}");
        assert!(err.to_string().contains("/root/sub/a.ipynb"), "{err}");
        assert_eq!(s.hung_calls(), 1);
        // Same folder: refused without running.
        let again = s
            .run(Place::Root, Path::new("/root/sub/b.ipynb"), "reading", || 1)
            .await
            .unwrap_err();
        assert!(again.detail.contains("was not tried"), "{again}");
        // Another folder: served.
        let other = s
            .run(Place::Root, Path::new("/root/c.ipynb"), "reading", || 2)
            .await
            .unwrap();
        assert_eq!(other, 2);
        // The stuck call returns: the folder is served again.
        release.send(()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while s.hung_calls() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(s.hung_calls(), 0);
        let back = s
            .run(Place::Root, Path::new("/root/sub/b.ipynb"), "reading", || 3)
            .await
            .unwrap();
        assert_eq!(back, 3);
    }

    #[tokio::test]
    async fn an_open_breaker_fails_calls_of_its_place_only() {
        let s = storage(1000);
        s.breaker(Place::DataDir).trip("probe timed out".into());
        let err = s
            .run(
                Place::DataDir,
                Path::new("/data/state.db"),
                "the state database",
                || (),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("state database"), "{err}");
        assert!(
            err.to_string().contains("nothing accepted was lost"),
            "{err}"
        );
        assert_eq!(
            s.run(Place::Root, Path::new("/root/a.ipynb"), "r", || 5)
                .await
                .unwrap(),
            5
        );
        s.breaker(Place::DataDir).close();
        assert!(s.check(Place::DataDir).is_ok());
    }
}
