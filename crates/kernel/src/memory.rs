//! Resident memory of kernels, read from Linux `/proc`: a kernel is started as the leader of
//! its own process group, so its memory is the resident set of every process in that group
//! (the kernel and whatever it forked: `multiprocessing` workers, shells). One pass over
//! `/proc` answers for every kernel at once.
//!
//! Source: proc(5), `/proc/PID/stat` fields 5 (`pgrp`) and 24 (`rss`, in pages).

use std::collections::HashMap;

/// Bytes per page of the resident-set counts in `/proc/PID/stat` (4 KiB on every Linux this
/// server targets; `sysconf(_SC_PAGESIZE)`).
fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

/// `(pgrp, rss_pages)` of one `/proc/PID/stat` line, or `None` when it cannot be parsed.
fn parse_stat(stat: &str) -> Option<(u32, u64)> {
    // The command name (field 2) may contain spaces and parentheses: skip past the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): pgrp is field 5 (index 2), rss field 24 (index 21).
    let pgrp = fields.get(2)?.parse().ok()?;
    let rss = fields.get(21)?.parse().ok()?;
    Some((pgrp, rss))
}

/// Resident bytes of each process group in `groups` (group id = the kernel's PID), summed
/// over its live processes. Groups with no process left are absent from the answer. Blocking
/// (reads `/proc`), about a millisecond for a few hundred processes: call it off the async
/// runtime.
pub fn group_resident_bytes(groups: &[u32]) -> HashMap<u32, u64> {
    let mut out = HashMap::new();
    if groups.is_empty() {
        return out;
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    let page = page_size();
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((pgrp, rss)) = parse_stat(&stat) {
            if groups.contains(&pgrp) {
                *out.entry(pgrp).or_insert(0) += rss * page;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_tricky_command_name() {
        let line = "4242 (py (thon) x) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 \
                    123 456789 1000 18446744073709551615";
        assert_eq!(parse_stat(line), Some((4242, 1000)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn our_own_group_has_resident_memory() {
        let pgrp = rustix::process::getpgrp().as_raw_nonzero().get() as u32;
        let bytes = group_resident_bytes(&[pgrp]);
        assert!(bytes.get(&pgrp).copied().unwrap_or(0) > 0, "{bytes:?}");
    }
}
