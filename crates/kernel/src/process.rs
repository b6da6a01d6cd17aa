//! Process helpers: liveness by PID plus start time (so a reused PID is not mistaken for our
//! kernel), exit notification through pidfds, and signals to a kernel's process group. Linux
//! `/proc` is the source of truth.

use std::io;

/// The start time of process `pid` in clock ticks since boot (field 22 of `/proc/PID/stat`),
/// or `None` if there is no such process.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    // `rest` starts at field 3; field 22 is index 19 here.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// True when `pid` exists, is not a zombie, and (when given) started at `expected_start`.
pub fn is_alive(pid: u32, expected_start: Option<u64>) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(close) = stat.rfind(')') else {
        return false;
    };
    let state = stat[close + 2..].chars().next();
    if matches!(state, Some('Z') | Some('X')) {
        return false;
    }
    match expected_start {
        Some(expected) => start_time(pid) == Some(expected),
        None => true,
    }
}

/// Sends `signal` to the process group led by `pid` (kernels are started as group leaders),
/// falling back to the process itself if it has no group of its own.
pub fn signal_group(pid: u32, signal: i32) -> io::Result<()> {
    // 0 (a remote kernel has no PID) or a PID past i32 would signal our own group or every
    // process: never.
    if pid == 0 || pid > i32::MAX as u32 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to signal process group {pid}"),
        ));
    }
    let pgid = pid as libc::pid_t;
    if kill(-pgid, signal).is_ok() {
        return Ok(());
    }
    kill(pgid, signal)
}

/// Sends `signal` to exactly `pid`.
pub fn signal_pid(pid: u32, signal: i32) -> io::Result<()> {
    kill(pid as libc::pid_t, signal)
}

/// Resolves when process `pid` exits. Uses a pidfd (Linux ≥ 5.3), which becomes readable when
/// the process ends: no polling, and it works for processes that are not our children (kernels
/// reattached after a server restart). Where pidfds are unavailable it checks once a second.
pub async fn wait_for_exit(pid: u32, expected_start: Option<u64>) {
    if let Some(async_fd) = pidfd_open(pid).and_then(register_readable) {
        {
            // Re-check after registering: the process may have ended before the pidfd existed.
            if is_alive(pid, expected_start) {
                let _ = async_fd.readable().await;
            }
            return;
        }
    }
    while is_alive(pid, expected_start) {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

#[allow(unsafe_code)]
fn register_readable(
    fd: std::os::fd::OwnedFd,
) -> Option<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    // SAFETY: `fd` is an open descriptor we own; the AsyncFd takes ownership of it, so it stays
    // open and refers to the same pidfd for the AsyncFd's whole lifetime.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE).ok()
    }
}

#[allow(unsafe_code)]
fn pidfd_open(pid: u32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd as _;
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new file descriptor or -1;
    // no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

#[allow(unsafe_code)]
fn kill(pid: libc::pid_t, signal: i32) -> io::Result<()> {
    // SAFETY: kill(2) takes plain integers and has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_with_its_start_time() {
        let pid = std::process::id();
        let start = start_time(pid).expect("own start time");
        assert!(is_alive(pid, Some(start)));
        assert!(
            !is_alive(pid, Some(start + 1)),
            "a different start time is a different process"
        );
    }

    #[tokio::test]
    async fn wait_for_exit_resolves_when_a_process_ends() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let pid = child.id();
        let start = start_time(pid);
        let waiter = tokio::spawn(wait_for_exit(pid, start));
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            // Reap it so that it does not stay a zombie (zombies count as dead anyway).
            tokio::task::spawn_blocking(move || child.wait())
                .await
                .unwrap()
                .unwrap();
            waiter.await.unwrap();
        })
        .await
        .expect("the waiter resolves after the process exits");
    }

    #[test]
    fn missing_process_is_dead() {
        // PIDs are bounded by pid_max (at most 2^22), so this one cannot exist.
        assert!(!is_alive(u32::MAX - 7, None));
        assert_eq!(start_time(u32::MAX - 7), None);
    }
}
