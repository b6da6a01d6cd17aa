//! Supervision of the per-notebook workers. A worker is a task that owns its notebook's queue;
//! if it panicked unsupervised, the notebook would be dead for the rest of the process and its
//! queued rows would run on the next start. The supervisor catches the panic, settles the job
//! the worker had in hand as `failed` (saying so), and serves the same queue again.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::mpsc;

use super::session::{Job, NotebookSession};
use super::{worker, Engine};
use crate::store::Status;

/// Runs the worker of `session` until its queue closes, restarting it after a panic.
pub async fn run(
    engine: Engine,
    session: Arc<NotebookSession>,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    loop {
        let served = AssertUnwindSafe(worker::serve(&engine, &session, &mut rx))
            .catch_unwind()
            .await;
        let Err(panic) = served else { return };
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        tracing::error!(notebook = %session.path.rel, "the notebook's worker panicked ({what}); restarting it");
        if let Ok(mut r) = session.running.lock() {
            *r = None;
        }
        let job = session.current_job.lock().ok().and_then(|mut j| j.take());
        if let Some(id) = job {
            let msg = format!(
                "the server's worker for '{}' failed while handling this execution ({what}); \
                 it may or may not have run in the kernel. The notebook's queue goes on; \
                 check the kernel's state before relying on it",
                session.path.rel
            );
            if let Some(rec) =
                worker::finish_without_kernel(&engine, &id, Status::Failed, "ServerError", &msg)
                    .await
            {
                if rec.stop_on_error && !rec.allow_error {
                    worker::cancel_rest_of_batch(&engine, &rec).await;
                }
            }
        }
    }
}
