//! `DATA_DIR/daemon.json` (SPEC §2, §7): the running daemon's MCP URL and PID, written (mode
//! 0600, atomically) once its HTTP listener is bound, removed on a clean exit. `connect`
//! reads it to find the daemon; a second server names the URL in its refusal. A file whose
//! PID is gone is stale: readers ignore it, the next daemon replaces it (with a log line).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Writes `bytes` to `DATA_DIR/<stem>.<pid>.tmp` (mode 0600, fsync'd) and returns its path,
/// for the caller to rename or hard-link into place. Errors name the file.
pub(crate) fn write_private_temp(
    data_dir: &Path,
    stem: &str,
    bytes: &[u8],
) -> anyhow::Result<PathBuf> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = data_dir.join(format!("{stem}.{}.tmp", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
    Ok(tmp)
}

/// The content of `daemon.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DaemonInfo {
    /// The MCP endpoint, e.g. `http://127.0.0.1:3000/mcp`.
    pub url: String,
    /// The daemon's process id.
    pub pid: u32,
    /// RFC 3339 start time.
    pub started_at: String,
}

impl DaemonInfo {
    /// The base URL (the MCP URL without its `/mcp` path), for `/health/*`.
    pub fn base_url(&self) -> &str {
        self.url.strip_suffix("/mcp").unwrap_or(&self.url)
    }
}

/// The path of `daemon.json` in a data dir.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("daemon.json")
}

/// Whether a process with this PID exists (signal 0).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    rustix::process::Pid::from_raw(pid).is_some_and(|p| {
        match rustix::process::test_kill_process(p) {
            Ok(()) => true,
            Err(e) => e == rustix::io::Errno::PERM,
        }
    })
}

/// The daemon file's content if it names a live process; `None` if absent, unreadable or
/// stale.
pub fn read_live(data_dir: &Path) -> Option<DaemonInfo> {
    let info = read(data_dir)?;
    pid_alive(info.pid).then_some(info)
}

/// The daemon file's content, live or not.
pub fn read(data_dir: &Path) -> Option<DaemonInfo> {
    let text = std::fs::read_to_string(path(data_dir)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes the file for this process (replacing a stale one, with a log line).
pub fn write(data_dir: &Path, url: &str) -> anyhow::Result<DaemonInfo> {
    if let Some(old) = read(data_dir) {
        if old.pid != std::process::id() {
            tracing::warn!(
                "replacing a stale {} left by PID {} (gone)",
                path(data_dir).display(),
                old.pid
            );
        }
    }
    let info = DaemonInfo {
        url: url.to_string(),
        pid: std::process::id(),
        started_at: crate::store::now(),
    };
    let tmp = write_private_temp(
        data_dir,
        ".daemon.json",
        serde_json::to_string_pretty(&info)?.as_bytes(),
    )?;
    std::fs::rename(&tmp, path(data_dir))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path(data_dir).display()))?;
    Ok(info)
}

/// Removes the file if it is this process's.
pub fn remove(data_dir: &Path) {
    if read(data_dir).is_some_and(|i| i.pid == std::process::id()) {
        let _ = std::fs::remove_file(path(data_dir));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_read_and_removed_by_its_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_live(dir.path()).is_none());
        let info = write(dir.path(), "http://127.0.0.1:1/mcp").unwrap();
        assert_eq!(read_live(dir.path()), Some(info.clone()));
        assert_eq!(info.base_url(), "http://127.0.0.1:1");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A file naming a process that is gone is stale.
        let stale = DaemonInfo {
            pid: u32::MAX - 1,
            ..info
        };
        std::fs::write(path(dir.path()), serde_json::to_string(&stale).unwrap()).unwrap();
        assert!(read_live(dir.path()).is_none());
        remove(dir.path());
        assert!(read(dir.path()).is_some(), "not ours: kept");
        write(dir.path(), "http://127.0.0.1:2/mcp").unwrap();
        remove(dir.path());
        assert!(read(dir.path()).is_none());
    }
}
