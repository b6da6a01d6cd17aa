//! Process helpers: liveness by PID plus start time (so a reused PID is not mistaken for our
//! kernel), and signals to a kernel's process group. Linux `/proc` is the source of truth.

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

    #[test]
    fn missing_process_is_dead() {
        // PIDs are bounded by pid_max (at most 2^22), so this one cannot exist.
        assert!(!is_alive(u32::MAX - 7, None));
        assert_eq!(start_time(u32::MAX - 7), None);
    }
}
