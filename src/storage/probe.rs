//! The storage probe (SPEC §8): every `--storage-probe-interval`, one attempt per location
//! writes, fsyncs, reads back and deletes a small file (`.jmcp-probe-<pid>-<n>`) in the data
//! dir and in the root. Each attempt runs on a thread of its own and is waited for at most
//! `--storage-timeout`; a hung attempt is abandoned (never joined) and the next round waits on
//! it again instead of starting another, so a frozen mount costs one stuck thread per
//! location. The loop itself is one std thread: nothing here touches the async runtime.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Instant;

use super::{Place, Storage};

/// One attempt in flight: its answer, and when it started.
struct Attempt {
    rx: Receiver<Result<(), String>>,
    started: Instant,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

impl Storage {
    /// Starts the probe thread (once per `Storage`). Errors starting the thread are logged:
    /// the server then runs without a breaker, with every call still bounded.
    pub fn start_probe(self: &Arc<Self>) {
        if self.probing.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("jmcp-storage-probe".into())
            .spawn(move || {
                let mut inflight: [Option<Attempt>; 2] = [None, None];
                loop {
                    me.round(&mut inflight);
                    std::thread::sleep(me.interval);
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the storage probe thread: {e}");
        }
    }

    /// One probe of both locations, concurrently, each bounded by the timeout.
    fn round(&self, inflight: &mut [Option<Attempt>; 2]) {
        let places = [Place::DataDir, Place::Root];
        for (i, place) in places.iter().enumerate() {
            if inflight[i].is_none() {
                inflight[i] = Some(start(self.breaker(*place).path().to_path_buf()));
            }
        }
        let deadline = Instant::now() + self.timeout;
        for (i, place) in places.iter().enumerate() {
            let Some(attempt) = inflight[i].take() else {
                continue;
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let breaker = self.breaker(*place);
            match attempt.rx.recv_timeout(left) {
                Ok(Ok(())) => breaker.close(),
                Ok(Err(e)) => breaker.trip(e),
                Err(RecvTimeoutError::Timeout) => {
                    breaker.trip(format!(
                        "a probe (write, fsync, read, delete of a small file) has not answered for {:.1} s (limit {} s)",
                        attempt.started.elapsed().as_secs_f64(),
                        self.timeout.as_secs_f64()
                    ));
                    inflight[i] = Some(attempt);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    breaker.trip("the probe thread ended without an answer".into())
                }
            }
        }
        self.publish_gauge();
    }
}

/// Starts one attempt on a thread of its own.
fn start(dir: PathBuf) -> Attempt {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("jmcp-storage-probe-io".into())
        .spawn(move || {
            let _ = tx.send(probe(&dir));
        });
    let rx = match spawned {
        Ok(_) => rx,
        Err(e) => {
            let (tx, rx) = mpsc::channel();
            let _ = tx.send(Err(format!("cannot start a probe thread: {e}")));
            rx
        }
    };
    Attempt {
        rx,
        started: Instant::now(),
    }
}

/// Write, fsync, read back, delete. Errors say which step failed and why.
pub(crate) fn probe(dir: &Path) -> Result<(), String> {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!(".jmcp-probe-{}-{n}", std::process::id()));
    let payload = format!("jupyter-mcp storage probe {n}\n");
    let step = |what: &str, e: std::io::Error| format!("{what} {} failed: {e}", path.display());
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| step("creating", e))
        .and_then(|mut f| {
            f.write_all(payload.as_bytes())
                .map_err(|e| step("writing", e))?;
            f.sync_all().map_err(|e| step("fsync of", e))
        });
    if let Err(e) = written {
        // A file created on a full disk is removed again (never leave one behind).
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    let mut back = String::new();
    let read = std::fs::File::open(&path)
        .and_then(|mut f| f.read_to_string(&mut back))
        .map_err(|e| step("reading back", e));
    let removed = std::fs::remove_file(&path).map_err(|e| step("deleting", e));
    read?;
    removed?;
    if back != payload {
        return Err(format!(
            "{} read back different bytes than were written",
            path.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_probe_round_closes_on_success_and_opens_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let missing = dir.path().join("gone");
        let s = Storage::new(
            &data,
            &missing,
            Duration::from_secs(2),
            Duration::from_secs(5),
        );
        let mut inflight = [None, None];
        s.round(&mut inflight);
        assert!(!s.breaker(Place::DataDir).is_open());
        let why = s.breaker(Place::Root).reason().expect("root breaker open");
        assert!(why.contains("creating"), "{why}");
        assert!(why.contains("gone"), "{why}");
        std::fs::create_dir(&missing).unwrap();
        s.round(&mut inflight);
        assert!(!s.any_open(), "closed after the next success");
        assert_eq!(
            std::fs::read_dir(&missing).unwrap().count(),
            0,
            "probe file deleted"
        );
    }
}
