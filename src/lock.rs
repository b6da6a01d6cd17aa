//! One server per data directory (SPEC §7): `DATA_DIR/server.lock` is held with an exclusive
//! advisory lock for the life of the process and names its PID, so a second server gets a clear
//! error naming the first. The lock dies with the process (kill -9 included).

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::Path;

/// Held lock; released when dropped or when the process exits.
pub struct ServerLock {
    _file: File,
}

impl ServerLock {
    /// Takes the lock or explains who holds it.
    pub fn acquire(data_dir: &Path) -> anyhow::Result<ServerLock> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            anyhow::anyhow!("cannot create the data dir {}: {e}", data_dir.display())
        })?;
        let path = data_dir.join("server.lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim().to_string();
        if file.try_lock().is_err() {
            let daemon =
                crate::http::daemon_file::read(data_dir).filter(|d| d.pid.to_string() == holder);
            anyhow::bail!(
                "another jupyter-mcp server ({}) is using the data dir {}: stop it, {}or give \
                 this one its own --data-dir",
                match (holder.as_str(), &daemon) {
                    ("", _) => "unknown PID".to_string(),
                    (pid, Some(d)) => format!("PID {pid}, daemon at {}", d.url),
                    (pid, None) => format!("PID {pid}"),
                },
                data_dir.display(),
                if daemon.is_some() {
                    "connect to it (jupyter-mcp connect), "
                } else {
                    ""
                }
            );
        }
        if !holder.is_empty() && holder != std::process::id().to_string() {
            tracing::info!(
                "took over {} from PID {holder}, which is gone",
                path.display()
            );
        }
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        writeln!(file, "{}", std::process::id())?;
        file.sync_all()?;
        Ok(ServerLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = ServerLock::acquire(dir.path()).unwrap();
        let err = ServerLock::acquire(dir.path()).err().unwrap().to_string();
        assert!(
            err.contains(&format!("PID {}", std::process::id())),
            "{err}"
        );
        drop(first);
        assert!(ServerLock::acquire(dir.path()).is_ok(), "released on drop");
    }
}
