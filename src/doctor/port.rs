//! Whether the daemon's `--bind` address is free, and when it is not, who holds it: the
//! listening socket's inode from `/proc/net/tcp{,6}`, then the process whose `/proc/PID/fd`
//! links to it (only processes this user may inspect; root sees all).

use std::net::SocketAddr;

/// A process listening on a port.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    /// Its PID.
    pub pid: u32,
    /// Its command line (arguments joined by spaces, at most 200 characters).
    pub command: String,
}

/// Binds `addr` and releases it at once. `Ok(())` when it is free (port 0 always is),
/// else the bind error.
pub fn try_bind(addr: SocketAddr) -> std::io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    std::net::TcpListener::bind(addr).map(drop)
}

/// The processes listening on TCP `port` (any address), as far as `/proc` lets us see.
/// Empty when none was found or `/proc` is unreadable.
pub fn holders(port: u16) -> Vec<Holder> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return Vec::new();
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let owns = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .map(|l| wanted.iter().any(|w| l.as_os_str() == w.as_str()))
                .unwrap_or(false)
        });
        if owns {
            found.push(Holder {
                pid,
                command: command_line(pid),
            });
        }
    }
    found
}

fn command_line(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let mut s: String = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    if s.chars().count() > 200 {
        s = s.chars().take(200).collect::<String>() + "…";
    }
    if s.is_empty() {
        "(command line not readable)".into()
    } else {
        s
    }
}

/// Inodes of sockets in state LISTEN (`0A`) on `port` in one `/proc/net/tcp*` table.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local = f.get(1)?;
            let state = f.get(3)?;
            let inode = f.get(9)?.parse::<u64>().ok()?;
            let p = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            (p == port && *state == "0A" && inode != 0).then_some(inode)
        })
        .collect()
}

/// The line for a port that is taken: who holds it, and what to do.
pub fn describe_taken(addr: SocketAddr, err: &std::io::Error) -> String {
    let who = holders(addr.port());
    let by = if who.is_empty() {
        "by a process this user cannot inspect".to_string()
    } else {
        who.iter()
            .map(|h| format!("by PID {} ({})", h.pid, h.command))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "{addr} is not free ({err}): held {by}; stop it, or pick another address with --bind \
         ADDR:PORT (port 0 picks a free one)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_sockets_are_found_in_a_proc_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:0BB8 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(listening_inodes(table, 3000), vec![4242]);
        assert!(listening_inodes(table, 3001).is_empty());
    }

    #[test]
    fn a_held_port_names_this_process() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let err = try_bind(addr).unwrap_err();
        let me = std::process::id();
        assert!(holders(addr.port()).iter().any(|h| h.pid == me));
        let line = describe_taken(addr, &err);
        assert!(line.contains(&format!("PID {me}")), "{line}");
    }
}
