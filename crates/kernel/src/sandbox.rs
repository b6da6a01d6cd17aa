//! Keeping kernel code out of the server's private folders with Linux Landlock (best effort).
//!
//! Landlock only *allows*: a sandboxed process can reach what some rule grants and nothing
//! else. To hide a folder `D` (the data dir, with `secret.key` and `state.db`) while leaving
//! the rest of the file system as it was, every entry that exists in each ancestor of `D`,
//! except the one leading to `D`, gets full access; the ancestors themselves get only
//! `ReadDir` (listing, which shows names, not contents). So a kernel can read and write
//! everything it could before, *except* `D` and new entries created directly in an ancestor
//! of `D` after the kernel started (e.g. with the default data dir, a new file right in
//! `~/.local/share`; with a data dir in `/tmp`, a new file right in `/tmp`).
//!
//! Kernels need a few per-user folders that usually sit right in `~` or `~/.local/share`
//! (IPython's `~/.ipython`, created on first start; the XDG cache, config and data folders).
//! Those that are missing are created before a kernel is confined ([`USER_DIRS`]), so a
//! first kernel on a fresh account starts; any other new entry directly in an ancestor
//! stays refused.
//!
//! A Landlock domain also stops the sandboxed process from `ptrace`-ing or reading
//! `/proc/<pid>/{environ,mem,fd}` of processes outside it, i.e. of the server, whose memory
//! and environment hold the key.
//!
//! The restriction is applied to a fresh thread that then spawns the kernel (Landlock
//! domains and `no_new_privs` are per thread and inherited by children), so the server
//! itself is never restricted and no `unsafe` `pre_exec` is needed.
//!
//! When the running Linux has no Landlock (before 5.13, or disabled) nothing is enforced and
//! [`Confinement::NotEnforced`] says so: then a kernel running as the server's user can still
//! open the data dir by its path. The connection file and the kernel's environment never
//! name the data dir in any case (see `launch`).

use std::path::{Path, PathBuf};

use landlock::{
    path_beneath_rules, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    ABI,
};

/// Whether a kernel was started confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confinement {
    /// No folder was to be hidden.
    None,
    /// Landlock enforced every rule.
    Enforced,
    /// Landlock enforced some rights only (an older Landlock ABI).
    Partial,
    /// Landlock is not available here: nothing hidden.
    NotEnforced,
}

/// The highest Landlock ABI this crate knows; the kernel's own is used if lower.
const ABI_WANTED: ABI = ABI::V6;

/// Restricts the calling thread (and the processes it starts later) so that the folders in
/// `hide` can be neither read nor written, except the existing folders in `except` beneath
/// them (e.g. the checkpoints folder, where kernels write and read their own files). Call
/// it only on a thread made for this purpose. Errors: a Landlock call failed in a way other
/// than "not supported".
pub fn restrict_current_thread(
    hide: &[PathBuf],
    except: &[PathBuf],
) -> Result<Confinement, String> {
    let hide: Vec<PathBuf> = hide.iter().filter_map(|d| d.canonicalize().ok()).collect();
    if hide.is_empty() {
        return Ok(Confinement::None);
    }
    create_user_dirs(&hide, &user_dirs(|k| std::env::var_os(k)));
    let all = AccessFs::from_all(ABI_WANTED);
    let mut granted: Vec<PathBuf> = except
        .iter()
        .filter_map(|d| d.canonicalize().ok())
        .filter(|d| hide.iter().any(|h| d.starts_with(h)))
        .collect();
    let mut listed: Vec<PathBuf> = hide.clone();
    for target in &hide {
        for (ancestor, next) in ancestors_and_next(target) {
            listed.push(ancestor.clone());
            let Ok(entries) = std::fs::read_dir(&ancestor) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path == next || hide.iter().any(|h| h.starts_with(&path)) {
                    continue;
                }
                granted.push(path);
            }
        }
    }
    // Symlinks are skipped (a link to `/` would grant everything); a rule gets only the
    // rights its file type accepts (directory rights on a socket or FIFO would make Landlock
    // refuse the rule, and the whole ruleset would then not be enforced).
    let file_rights = AccessFs::from_file(ABI_WANTED);
    let (dirs, others): (Vec<PathBuf>, Vec<PathBuf>) = granted
        .into_iter()
        .filter_map(|p| {
            let meta = std::fs::symlink_metadata(&p).ok()?;
            (!meta.file_type().is_symlink()).then_some((p, meta.is_dir()))
        })
        .partition_map_dirs();
    let status = Ruleset::default()
        .handle_access(all)
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(path_beneath_rules(&dirs, all)))
        .and_then(|r| r.add_rules(path_beneath_rules(&others, file_rights)))
        .and_then(|r| r.add_rules(path_beneath_rules(&listed, AccessFs::ReadDir)))
        .and_then(|r| r.restrict_self())
        .map_err(|e| format!("could not confine the kernel with Landlock: {e}"))?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => Confinement::Enforced,
        RulesetStatus::PartiallyEnforced => Confinement::Partial,
        RulesetStatus::NotEnforced => Confinement::NotEnforced,
    })
}

/// Per-user folders kernels create on their own: `(environment variable naming it, path
/// under `$HOME` otherwise)`. IPython's profile folder, the XDG base folders, Jupyter's
/// data folder (under the XDG data folder) and pip's `--user` folders.
pub const USER_DIRS: [(Option<&str>, &str); 6] = [
    (Some("IPYTHONDIR"), ".ipython"),
    (Some("XDG_CACHE_HOME"), ".cache"),
    (Some("XDG_CONFIG_HOME"), ".config"),
    (Some("XDG_DATA_HOME"), ".local/share"),
    (None, ".local/share/jupyter"),
    (None, ".local/lib"),
];

/// The absolute paths of [`USER_DIRS`] in an environment read by `var`.
pub fn user_dirs(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Vec<PathBuf> {
    let home = var("HOME").map(PathBuf::from).filter(|h| h.is_absolute());
    USER_DIRS
        .iter()
        .filter_map(|(env, rel)| {
            env.and_then(&var)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .or_else(|| home.as_ref().map(|h| h.join(rel)))
        })
        .collect()
}

/// Creates each missing folder of `dirs` whose parent is an ancestor of a hidden folder
/// (where a confined kernel could not create it). Failures are logged, not fatal: the
/// kernel then meets the same error it would have met unconfined.
fn create_user_dirs(hide: &[PathBuf], dirs: &[PathBuf]) {
    for dir in dirs {
        let Some(parent) = dir.parent().and_then(|p| p.canonicalize().ok()) else {
            continue;
        };
        let above_hidden = hide.iter().any(|h| h.starts_with(&parent) && h != &parent);
        let inside_hidden = hide.iter().any(|h| parent.starts_with(h));
        if above_hidden && !inside_hidden && !dir.exists() {
            if let Err(e) = std::fs::create_dir(dir) {
                tracing::warn!(
                    "could not create {} before confining a kernel: {e}",
                    dir.display()
                );
            }
        }
    }
}

/// Splits `(path, is_dir)` pairs into directories and everything else.
trait PartitionDirs {
    fn partition_map_dirs(self) -> (Vec<PathBuf>, Vec<PathBuf>);
}

impl<I: Iterator<Item = (PathBuf, bool)>> PartitionDirs for I {
    fn partition_map_dirs(self) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let (mut dirs, mut others) = (Vec::new(), Vec::new());
        for (p, is_dir) in self {
            if is_dir {
                dirs.push(p)
            } else {
                others.push(p)
            }
        }
        (dirs, others)
    }
}

/// `(ancestor, child of it on the way to target)` from `/` down to target's parent.
fn ancestors_and_next(target: &Path) -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    let mut cur = target.to_path_buf();
    while let Some(parent) = cur.parent() {
        out.push((parent.to_path_buf(), cur.clone()));
        cur = parent.to_path_buf();
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The data dir reached through the `slash` symlink beside it.
    fn base_slash(data: &Path) -> PathBuf {
        let base = data.parent().unwrap();
        base.join("slash").join(data.strip_prefix("/").unwrap())
    }

    #[test]
    fn a_confined_thread_cannot_read_the_hidden_folder_but_reads_its_siblings() {
        let base = tempfile::tempdir().unwrap();
        let secret = base.path().join("data");
        let open = base.path().join("root");
        std::fs::create_dir_all(&secret).unwrap();
        std::fs::create_dir_all(&open).unwrap();
        std::fs::write(secret.join("secret.key"), b"k").unwrap();
        std::fs::create_dir_all(secret.join("checkpoints")).unwrap();
        std::fs::write(open.join("n.ipynb"), b"n").unwrap();
        // Siblings that broke or widened the rules: a socket, a FIFO, a symlink to `/`.
        let _sock = std::os::unix::net::UnixListener::bind(base.path().join("sock")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            base.path().join("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        std::os::unix::fs::symlink("/", base.path().join("slash")).unwrap();
        let (s, o) = (secret.clone(), open.clone());
        let (status, secret_read, except_write, open_read, open_write) =
            std::thread::spawn(move || {
                let except = [s.join("checkpoints")];
                let status = restrict_current_thread(std::slice::from_ref(&s), &except).unwrap();
                (
                    status,
                    std::fs::read(s.join("secret.key")).is_ok()
                        || std::fs::read(base_slash(&s).join("secret.key")).is_ok(),
                    std::fs::write(s.join("checkpoints").join("t.dill"), b"x").is_ok(),
                    std::fs::read(o.join("n.ipynb")).is_ok(),
                    std::fs::write(o.join("new.txt"), b"x").is_ok(),
                )
            })
            .join()
            .unwrap();
        if status == Confinement::NotEnforced {
            eprintln!("skipped: Landlock is not available on this Linux");
            return;
        }
        assert!(!secret_read, "the hidden folder must not be readable");
        assert!(except_write, "the exception beneath it stays usable");
        assert!(open_read && open_write, "siblings stay usable");
        // This thread was never restricted.
        assert!(std::fs::read(secret.join("secret.key")).is_ok());
    }
}
