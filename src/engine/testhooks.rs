//! Test-only fault points, inert unless the environment variable `JUPYTER_MCP_TEST_HOOKS`
//! names a directory. They let end-to-end tests reproduce races and faults deterministically
//! (tests/e2e/test_faults.py):
//! - `<dir>/<point>.reached` is a FIFO: on reaching the point the server opens it for writing
//!   (blocking until the test opens it for reading), writes the point's name and closes it;
//! - then, if `<dir>/<point>.resume` is a FIFO, the server opens it for reading and reads to
//!   end of file: it pauses there until the test opens it for writing and closes it;
//! - `<dir>/<point>.panic` is a file: the server removes it and panics at the point (once).
//!
//! Points: `worker_before_kernel` (a worker is about to make sure a kernel runs for its next
//! execution), `shutdown_stopped` (`shutdown_kernel` stopped the kernel and still holds the
//! lifecycle lock), `restart_stopped` (`restart_kernel` stopped the old kernel and still holds
//! the lifecycle lock), `kernel_lifecycle_taken` (a caller that makes sure a kernel runs has
//! just taken the notebook's lifecycle lock), `cancel_marked` (`cancel_execution` marked a running
//! execution interrupted, before it signals the kernel), `worker_job` (a worker took a job; for panics).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::OnceLock;

fn dir() -> Option<&'static PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| std::env::var_os("JUPYTER_MCP_TEST_HOOKS").map(PathBuf::from))
        .as_ref()
}

/// Runs the fault point `name` (see the module docs); returns at once when hooks are off.
pub async fn point(name: &'static str) {
    let Some(dir) = dir() else { return };
    let panic_file = dir.join(format!("{name}.panic"));
    if std::fs::remove_file(&panic_file).is_ok() {
        panic!("test hook: injected panic at '{name}'");
    }
    let (reached, resume) = (
        dir.join(format!("{name}.reached")),
        dir.join(format!("{name}.resume")),
    );
    if !reached.exists() && !resume.exists() {
        return;
    }
    let r = tokio::task::spawn_blocking(move || {
        if reached.exists() {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&reached)?
                .write_all(name.as_bytes())?;
        }
        if resume.exists() {
            let mut sink = Vec::new();
            std::fs::File::open(&resume)?.read_to_end(&mut sink)?;
        }
        std::io::Result::Ok(())
    })
    .await;
    tracing::debug!("test hook '{name}': {r:?}");
}
