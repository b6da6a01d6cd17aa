//! Forgetting notebooks nobody uses (issue 8 item 10): a server that runs for months must not
//! keep a session and a worker task for every notebook it ever touched. A worker whose queue
//! stayed idle for `retire_idle_notebooks_after` asks [`Engine::retire`] to drop its session;
//! the next call on that notebook starts a fresh one.
//!
//! Safe because the check and the removal happen under the sessions map lock, from which
//! every other holder gets its `Arc`: when only the map and the worker hold the session (and
//! nobody holds its file lock), nobody can send it a job or edit under its lock any more.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::session::{Job, NotebookSession};
use super::Engine;

/// Holders of an idle session: the sessions map and its worker's supervisor.
const IDLE_HOLDERS: usize = 2;

impl Engine {
    /// Removes `session` from the map when nothing uses or needs it: no kernel, nothing
    /// running or queued, no note or interrupt waiting for the next execution, no other
    /// holder of it or of its file lock. True when it was removed: its worker must end.
    pub(super) fn retire(
        &self,
        session: &Arc<NotebookSession>,
        rx: &mpsc::UnboundedReceiver<Job>,
    ) -> bool {
        let mut sessions = match self.inner.sessions.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let empty =
            |m: &std::sync::Mutex<Option<_>>| m.lock().map(|v| v.is_none()).unwrap_or(false);
        let idle = rx.is_empty()
            && Arc::strong_count(session) == IDLE_HOLDERS
            && Arc::strong_count(&session.file_lock) == 1
            && session.kernel.lock().map(|k| k.is_none()).unwrap_or(false)
            && session.running.lock().map(|r| r.is_none()).unwrap_or(false)
            && empty(&session.current_job)
            && empty(&session.death_note)
            && empty(&session.interrupt_next);
        let ours = sessions
            .get(&session.path.rel)
            .is_some_and(|s| Arc::ptr_eq(s, session));
        if idle && ours {
            sessions.remove(&session.path.rel);
            tracing::debug!(notebook = %session.path.rel, "forgot an idle notebook");
            true
        } else {
            false
        }
    }

    /// How many notebooks the engine keeps a session for.
    #[cfg(test)]
    pub(crate) fn session_count(&self) -> usize {
        self.inner.sessions.lock().map(|s| s.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser as _;

    use crate::cli::{Cli, Command};
    use crate::engine::{Engine, Position};

    fn engine(dir: &std::path::Path, retire_after: Duration) -> Engine {
        let (root, data) = (dir.join("root"), dir.join("data"));
        std::fs::create_dir_all(&root).unwrap();
        let cli = Cli::try_parse_from([
            "jupyter-mcp",
            "serve",
            "--root",
            root.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            unreachable!()
        };
        let mut config = args.shared.config(&root, true).unwrap();
        config.volume.retire_idle_notebooks_after = retire_after;
        Engine::new(config).unwrap()
    }

    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_notebooks_are_forgotten_and_come_back_on_the_next_call() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path(), Duration::from_millis(50));
        for name in ["a.ipynb", "b.ipynb"] {
            let path = e.notebook_path(name).unwrap();
            e.create_notebook(&path, None, vec![]).await.unwrap();
            e.insert_cell(&path, "1".into(), None, Position::End)
                .await
                .unwrap();
        }
        until("both notebooks forgotten", || e.session_count() == 0).await;
        // The next call works as before and the notebook is kept while it is used.
        let path = e.notebook_path("a.ipynb").unwrap();
        e.insert_cell(&path, "2".into(), None, Position::End)
            .await
            .unwrap();
        assert_eq!(e.all_cells(&path).await.unwrap().len(), 2);
        until("forgotten again", || e.session_count() == 0).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_notebook_in_use_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path(), Duration::from_millis(20));
        let path = e.notebook_path("held.ipynb").unwrap();
        e.create_notebook(&path, None, vec![]).await.unwrap();
        let held = e.session(&path);
        let file_lock = held.file_lock.clone();
        drop(held);
        // An edit in flight holds the file lock (`Engine::edit` clones it): the session, and
        // so the one lock of this notebook, must stay.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(e.session_count(), 1, "kept while its file lock is held");
        assert!(Arc::ptr_eq(&e.session(&path).file_lock, &file_lock));
        drop(file_lock);
        until("forgotten once released", || e.session_count() == 0).await;
    }

    use std::sync::Arc;
}
