//! Launching a kernel: reserve five loopback ports, write the connection file (mode 0600,
//! random HMAC key) into the runtime dir, spawn the kernelspec's argv in its own process group
//! (so the server can exit or restart without killing it), with stdout and stderr appended to a
//! log file beside the connection file (the server may die; a pipe would break the kernel).
//! The runtime dir is private (0700, ours) and the kernel inherits no `JUPYTER_MCP_*`
//! variable, so neither its argv nor its environment names the server's data dir or secret.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use jupyter_protocol::connection_info::{ConnectionInfo, Transport};
use rand::RngCore as _;

use crate::{process, KernelError, KernelSpec, Result};

/// Where and how to launch.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// Working directory of the kernel (the notebook's folder).
    pub cwd: PathBuf,
    /// Directory for connection and log files: a private runtime dir outside the data dir
    /// (created 0700 if missing; see [`ensure_private_dir`]).
    pub runtime_dir: PathBuf,
    /// Folders kernel code must neither read nor write (the server's data dir), hidden with
    /// Landlock where the running Linux has it (see [`crate::sandbox`]). Empty: none.
    pub hide: Vec<PathBuf>,
    /// Existing folders beneath `hide` that stay usable (the checkpoints folder).
    pub hide_except: Vec<PathBuf>,
}

/// A freshly spawned kernel process (not yet known to be ready).
#[derive(Debug)]
pub struct LaunchedKernel {
    /// Process id (also its process group id).
    pub pid: u32,
    /// Start time of the process in clock ticks since boot (PID-reuse guard).
    pub start_time: Option<u64>,
    /// Ports and key.
    pub connection: ConnectionInfo,
    /// `<runtime_dir>/kernel-<id>.json`.
    pub connection_file: PathBuf,
    /// `<runtime_dir>/kernel-<id>.log` (the kernel's stdout and stderr).
    pub log_file: PathBuf,
    /// The child handle: waiting on it tells us when the kernel exits.
    pub child: tokio::process::Child,
    /// Its ports, kept from other launches of this process until it is connected (drop it
    /// then; see `ports`).
    pub ports_claim: Option<crate::ports::PortClaim>,
    /// Whether [`LaunchOptions::hide`] is enforced for this kernel.
    pub confinement: crate::sandbox::Confinement,
}

/// Spawns `spec` with a new connection file. Errors carry the kernel log's tail.
pub async fn launch(spec: &KernelSpec, opts: &LaunchOptions) -> Result<LaunchedKernel> {
    ensure_private_dir(&opts.runtime_dir)?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let connection_file = opts.runtime_dir.join(format!("kernel-{id}.json"));
    let log_file = opts.runtime_dir.join(format!("kernel-{id}.log"));

    let (ports, listeners, claim) = crate::ports::reserve(5).await?;
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let connection = ConnectionInfo {
        ip: "127.0.0.1".into(),
        transport: Transport::TCP,
        shell_port: ports[0],
        iopub_port: ports[1],
        stdin_port: ports[2],
        control_port: ports[3],
        hb_port: ports[4],
        key: key.iter().map(|b| format!("{b:02x}")).collect(),
        signature_scheme: "hmac-sha256".into(),
        kernel_name: Some(spec.name.clone()),
    };
    write_private(
        &connection_file,
        &serde_json::to_vec_pretty(&connection).unwrap_or_default(),
    )?;

    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_file)
        .map_err(|e| KernelError::io(format!("creating {}", log_file.display()), e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| KernelError::io("duplicating the kernel log handle", e))?;

    let argv = kernel_argv(spec, &connection_file);
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(&opts.cwd)
        .envs(&spec.env)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .kill_on_drop(false);
    for (name, _) in std::env::vars_os() {
        if name
            .as_encoded_bytes()
            .starts_with(SERVER_ENV_PREFIX.as_bytes())
        {
            cmd.env_remove(&name);
        }
    }
    let (child, confinement) = spawn_confined(cmd, opts.hide.clone(), opts.hide_except.clone())
        .await
        .map_err(|reason| KernelError::StartFailed {
            name: spec.name.clone(),
            reason: format!("could not run {:?}: {reason}", argv[0]),
            stderr_tail: vec![],
        })?;
    // The kernel binds the ports as its first action; release our reservations now.
    drop(listeners);
    let pid = child.id().ok_or_else(|| KernelError::StartFailed {
        name: spec.name.clone(),
        reason: "the process exited immediately".into(),
        stderr_tail: log_tail(&log_file, 20),
    })?;
    Ok(LaunchedKernel {
        pid,
        start_time: process::start_time(pid),
        connection,
        connection_file,
        log_file,
        child,
        ports_claim: Some(claim),
        confinement,
    })
}

/// Spawns `cmd` from a fresh thread confined with [`crate::sandbox::restrict_current_thread`]
/// (so only the kernel, never the server, is restricted). Errors: the spawn failed, or
/// Landlock refused in a way other than "not supported" (the message says which).
async fn spawn_confined(
    mut cmd: tokio::process::Command,
    hide: Vec<PathBuf>,
    except: Vec<PathBuf>,
) -> std::result::Result<(tokio::process::Child, crate::sandbox::Confinement), String> {
    let handle = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("kernel-spawn".into())
        .spawn(move || {
            let result =
                crate::sandbox::restrict_current_thread(&hide, &except).and_then(|confinement| {
                    let _runtime = handle.enter();
                    cmd.spawn()
                        .map(|child| (child, confinement))
                        .map_err(|e| e.to_string())
                });
            let _ = tx.send(result);
        })
        .map_err(|e| format!("could not start a thread to spawn it: {e}"))?;
    rx.await
        .map_err(|_| "the spawning thread ended without an answer".to_string())?
}

/// Environment variables of the server (settings, the checkpoint secret) that a kernel
/// never inherits.
pub const SERVER_ENV_PREFIX: &str = "JUPYTER_MCP_";

/// Creates `dir` (and missing parents) mode 0700 and checks that it is ours and private:
/// owned by this user, no access for group or others (a wider mode on our own folder is
/// narrowed). Errors: it cannot be created, or belongs to someone else (e.g. a folder
/// planted in `/tmp` by another user).
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
    let err = |e| {
        KernelError::io(
            format!("creating the private runtime folder {}", dir.display()),
            e,
        )
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err)?;
    let me = rustix::process::geteuid().as_raw();
    // The folder and the one above it (`/tmp/jupyter-mcp-<uid>`) when we made that too.
    for d in [Some(dir), dir.parent()].into_iter().flatten() {
        let meta = std::fs::symlink_metadata(d).map_err(err)?;
        let ours = d == dir
            || d.file_name()
                .is_some_and(|n| n.to_string_lossy() == format!("jupyter-mcp-{me}"));
        if !ours {
            continue;
        }
        if !meta.is_dir() || meta.uid() != me {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{} is not a folder owned by this user (uid {me}); remove it or set XDG_RUNTIME_DIR",
                    d.display()
                ),
            )));
        }
        if meta.mode() & 0o077 != 0 {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
        }
    }
    Ok(())
}

/// The argv with `{connection_file}` substituted; IPython kernels get an in-memory history
/// (`--HistoryManager.hist_file=:memory:`) as nbclient gives them.
pub fn kernel_argv(spec: &KernelSpec, connection_file: &Path) -> Vec<String> {
    let file = connection_file.to_string_lossy();
    let mut argv: Vec<String> = spec
        .argv
        .iter()
        .map(|a| a.replace("{connection_file}", &file))
        .collect();
    if spec.is_ipykernel()
        && !argv
            .iter()
            .any(|a| a.starts_with("--HistoryManager.hist_file"))
    {
        argv.push("--HistoryManager.hist_file=:memory:".into());
    }
    argv
}

/// The last `n` lines of a kernel log (empty if unreadable). Reads at most the last 64 KiB:
/// a log can be large, and this runs on error paths and in `list_kernels`.
pub fn log_tail(path: &Path, n: usize) -> Vec<String> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    const TAIL_BYTES: u64 = 64 * 1024;
    let Ok(mut f) = std::fs::File::open(path) else {
        return vec![];
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(TAIL_BYTES);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return vec![];
    }
    let mut bytes = Vec::with_capacity((len - start) as usize);
    if f.take(TAIL_BYTES).read_to_end(&mut bytes).is_err() {
        return vec![];
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if start > 0 && !lines.is_empty() {
        lines.remove(0); // most likely cut in the middle
    }
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

/// Creates `path` with mode 0600 from the first byte on (no window with wider permissions).
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| KernelError::io(format!("creating {}", path.display()), e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| KernelError::io(format!("writing {}", path.display()), e))
}

/// Reads a connection file written by [`launch`] (used to reattach).
pub fn read_connection_file(path: &Path) -> Result<ConnectionInfo> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| KernelError::io(format!("reading {}", path.display()), e))?;
    serde_json::from_str(&text).map_err(|e| {
        KernelError::io(
            format!("parsing {}", path.display()),
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn connection_file_is_private() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("c.json");
        write_private(&p, b"{}").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(write_private(&p, b"{}").is_err(), "never overwrites");
    }

    #[test]
    fn log_tail_keeps_last_non_empty_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("k.log");
        std::fs::write(&p, "a\n\nb\nc\n").unwrap();
        assert_eq!(log_tail(&p, 2), vec!["b", "c"]);
        assert!(log_tail(&tmp.path().join("missing"), 2).is_empty());
    }

    #[test]
    fn log_tail_of_a_big_log_reads_only_its_end() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("big.log");
        let mut text = "x".repeat(200_000);
        text.push_str("\nlast-but-one\nlast\n");
        std::fs::write(&p, text).unwrap();
        assert_eq!(log_tail(&p, 2), vec!["last-but-one", "last"]);
    }
}
