//! Confinement of user-given paths to the configured root (SPEC §1 `--root`).
//!
//! A notebook path from an agent is checked (no NUL byte, no name over 255 bytes, not a
//! folder or special file), resolved against the root, and refused when `..` climbs out, when
//! it is absolute elsewhere, or when a symlink leads outside. The notebook's identity everywhere
//! else (store rows, sessions, kernels, file locks) is its *resolved* path relative to the
//! root, `/`-separated: one file reached through a symlinked folder inside the root is one
//! notebook. Resolution uses path strings and is only the identity; the file operations
//! themselves go through [`RootedPath::loc`], a root directory descriptor with which every
//! open, create and rename is confined beneath the root by the kernel when it happens
//! (`jmcp_notebook::io::Location`), so a symlink swapped in after this check is never
//! followed outside.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use jmcp_notebook::io::{open_root, Location};

/// Longest file or folder name Linux accepts (`NAME_MAX`, bytes).
const NAME_MAX: usize = 255;
/// Longest path Linux accepts (`PATH_MAX` including the NUL, bytes).
const PATH_MAX: usize = 4095;
/// Symlinks followed while resolving one path before giving up (as Linux's `ELOOP`).
const MAX_LINKS: usize = 40;

/// A path under the root: both forms, and the root descriptor to open it with.
#[derive(Debug, Clone)]
pub struct RootedPath {
    /// Relative to the root, `/`-separated, no `.` or `..`, symlinks resolved (e.g.
    /// `analysis/q3.ipynb`): the notebook's identity.
    pub rel: String,
    /// Absolute path on disk (the root joined with `rel`), for messages, the kernel's working
    /// folder and other places that need a path string. Never open it directly for notebook
    /// I/O: use [`RootedPath::loc`].
    pub abs: PathBuf,
    root_fd: Arc<OwnedFd>,
    root: PathBuf,
}

impl PartialEq for RootedPath {
    fn eq(&self, other: &Self) -> bool {
        self.rel == other.rel && self.root == other.root
    }
}

impl Eq for RootedPath {}

impl std::hash::Hash for RootedPath {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.rel.hash(state);
    }
}

impl RootedPath {
    /// The file beneath the root's directory descriptor: every open, create and rename
    /// through it is confined beneath the root at the moment it happens.
    pub fn loc(&self) -> Location {
        Location::beneath(self.root_fd.clone(), &self.root, &self.rel)
    }
}

/// Why a path was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// Empty string.
    #[error("the path is empty: give a notebook path relative to the root, e.g. `analysis.ipynb`")]
    Empty,
    /// Leaves the root lexically or through a symlink.
    #[error("'{path}' is outside the notebook root {root}: only paths under the root can be used (relative paths are resolved against it)")]
    OutsideRoot { path: String, root: PathBuf },
    /// Not a `.ipynb` file.
    #[error("'{path}' is not a notebook: notebook paths end in .ipynb")]
    NotNotebook { path: String },
    /// A path no file system accepts (NUL byte, a name over 255 bytes, over 4095 bytes).
    #[error("'{path}' cannot be a file name: {reason}")]
    Invalid { path: String, reason: &'static str },
    /// Exists, but is not a regular file (a folder, FIFO, device or socket).
    #[error("'{path}' is {what}, not a notebook file: a notebook must be a regular .ipynb file; choose another name")]
    NotRegular { path: String, what: &'static str },
    /// The root itself cannot be resolved.
    #[error("the notebook root {root} cannot be used: {reason}; create the folder or pass an existing one with --root")]
    Root {
        root: PathBuf,
        /// Why (not a `source`, so the message does not repeat it in a cause chain).
        reason: std::io::Error,
    },
}

/// The canonical root directory and a descriptor of it.
#[derive(Debug, Clone)]
pub struct Root {
    canonical: PathBuf,
    fd: Arc<OwnedFd>,
}

impl Root {
    /// Canonicalizes `dir` (which must exist) and opens it.
    pub fn new(dir: &Path) -> Result<Root, PathError> {
        let err = |reason| PathError::Root {
            root: dir.to_path_buf(),
            reason,
        };
        let canonical = dir.canonicalize().map_err(err)?;
        let fd = open_root(&canonical).map_err(err)?;
        Ok(Root {
            canonical,
            fd: Arc::new(fd),
        })
    }

    /// The canonical root path.
    pub fn path(&self) -> &Path {
        &self.canonical
    }

    /// Resolves a notebook path: it must end in `.ipynb` (after resolving symlinks) and, if
    /// it exists, be a regular file. Every tool that takes a notebook goes through here.
    pub fn notebook(&self, user: &str) -> Result<RootedPath, PathError> {
        let p = self.resolve(user)?;
        if !p.rel.ends_with(".ipynb") {
            return Err(PathError::NotNotebook {
                path: user.to_string(),
            });
        }
        if let Ok(meta) = std::fs::symlink_metadata(&p.abs) {
            let what = kind_name(&meta.file_type());
            if let Some(what) = what {
                return Err(PathError::NotRegular {
                    path: user.to_string(),
                    what,
                });
            }
        }
        Ok(p)
    }

    /// Resolves any path under the root. The file need not exist; existing symlinks are
    /// resolved (dangling ones through their target) so that the result is the real
    /// location, and refused if that leaves the root.
    pub fn resolve(&self, user: &str) -> Result<RootedPath, PathError> {
        let user_trimmed = user.trim();
        if user_trimmed.is_empty() {
            return Err(PathError::Empty);
        }
        let invalid = |reason| PathError::Invalid {
            path: user.escape_debug().to_string(),
            reason,
        };
        if user_trimmed.contains('\0') {
            return Err(invalid("it contains a NUL byte"));
        }
        let outside = || PathError::OutsideRoot {
            path: user.to_string(),
            root: self.canonical.clone(),
        };
        let given = Path::new(user_trimmed);
        let relative: PathBuf = if given.is_absolute() {
            // Accept absolute paths that point inside the root (after canonicalizing).
            let anchored = canonicalize_existing_prefix(given, 0).ok_or_else(outside)?;
            anchored
                .strip_prefix(&self.canonical)
                .map_err(|_| outside())?
                .to_path_buf()
        } else {
            given.to_path_buf()
        };
        // Lexical normalization: `..` may not climb above the root.
        let mut parts: Vec<String> = Vec::new();
        for comp in relative.components() {
            match comp {
                Component::Normal(s) => {
                    if s.len() > NAME_MAX {
                        return Err(invalid("a file or folder name is longer than 255 bytes"));
                    }
                    parts.push(s.to_string_lossy().to_string())
                }
                Component::CurDir => {}
                Component::ParentDir => {
                    if parts.pop().is_none() {
                        return Err(outside());
                    }
                }
                Component::RootDir | Component::Prefix(_) => return Err(outside()),
            }
        }
        if parts.is_empty() {
            return Err(PathError::Empty);
        }
        let abs = parts.iter().fold(self.canonical.clone(), |p, s| p.join(s));
        if abs.as_os_str().len() > PATH_MAX {
            return Err(invalid("the path is longer than 4095 bytes"));
        }
        // Symlinks: the real location must be inside; it is the identity.
        let real = canonicalize_existing_prefix(&abs, 0).ok_or_else(outside)?;
        let rel = real.strip_prefix(&self.canonical).map_err(|_| outside())?;
        let rel_parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().to_string())
            .collect();
        if rel_parts.is_empty() {
            return Err(PathError::Empty);
        }
        Ok(RootedPath {
            rel: rel_parts.join("/"),
            abs: real,
            root_fd: self.fd.clone(),
            root: self.canonical.clone(),
        })
    }
}

/// `None` for a regular file, else what it is.
fn kind_name(ft: &std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_file() {
        None
    } else if ft.is_dir() {
        Some("a folder")
    } else if ft.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if ft.is_socket() {
        Some("a socket")
    } else if ft.is_char_device() || ft.is_block_device() {
        Some("a device")
    } else if ft.is_symlink() {
        // Only a symlink that could not be resolved gets here.
        Some("a symlink that cannot be followed")
    } else {
        Some("a special file")
    }
}

/// Canonicalizes the longest existing prefix of `path` and appends the rest. A dangling
/// symlink on the way is resolved through its target (up to [`MAX_LINKS`] deep), so the
/// result is where a file created at `path` would really be.
fn canonicalize_existing_prefix(path: &Path, depth: usize) -> Option<PathBuf> {
    if depth > MAX_LINKS {
        return None;
    }
    let mut existing = path.to_path_buf();
    let mut rest: Vec<OsString> = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(c) => {
                return Some(rest.iter().rev().fold(c, |p, s| p.join(s)));
            }
            Err(_) => {
                let parent = existing.parent()?.to_path_buf();
                let name = existing.file_name()?.to_os_string();
                if let Ok(target) = std::fs::read_link(&existing) {
                    // A dangling symlink: continue from where it points.
                    let resolved = canonicalize_existing_prefix(&parent.join(target), depth + 1)?;
                    return Some(rest.iter().rev().fold(resolved, |p, s| p.join(s)));
                }
                rest.push(name);
                existing = parent;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        let root = Root::new(dir.path()).unwrap();
        (dir, root)
    }

    #[test]
    fn relative_paths_resolve_inside() {
        let (_d, r) = root();
        let p = r.notebook("sub/../a.ipynb").unwrap();
        assert_eq!(p.rel, "a.ipynb");
        assert_eq!(
            r.notebook("./sub/new/b.ipynb").unwrap().rel,
            "sub/new/b.ipynb"
        );
    }

    #[test]
    fn escapes_are_refused() {
        let (_d, r) = root();
        for bad in [
            "../x.ipynb",
            "sub/../../x.ipynb",
            "/etc/passwd.ipynb",
            "/tmp/x.ipynb",
        ] {
            assert!(
                matches!(r.notebook(bad), Err(PathError::OutsideRoot { .. })),
                "{bad} must be refused"
            );
        }
    }

    #[test]
    fn absolute_paths_inside_the_root_are_accepted() {
        let (d, r) = root();
        let abs = d.path().join("sub/c.ipynb");
        assert_eq!(
            r.notebook(abs.to_str().unwrap()).unwrap().rel,
            "sub/c.ipynb"
        );
    }

    #[test]
    fn symlinks_leaving_the_root_are_refused() {
        let (d, r) = root();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("link")).unwrap();
        std::fs::write(outside.path().join("n.ipynb"), "{}").unwrap();
        std::os::unix::fs::symlink(outside.path().join("n.ipynb"), d.path().join("f.ipynb"))
            .unwrap();
        assert!(r.notebook("link/n.ipynb").is_err());
        assert!(r.notebook("link/new.ipynb").is_err());
        assert!(r.notebook("f.ipynb").is_err());
    }

    #[test]
    fn non_notebooks_and_empty_are_refused() {
        let (_d, r) = root();
        assert!(matches!(
            r.notebook("a.txt"),
            Err(PathError::NotNotebook { .. })
        ));
        assert!(matches!(r.notebook("  "), Err(PathError::Empty)));
    }

    #[test]
    fn one_file_through_a_symlinked_folder_has_one_identity() {
        let (d, r) = root();
        std::fs::write(d.path().join("sub/n.ipynb"), "{}").unwrap();
        std::os::unix::fs::symlink("sub", d.path().join("alias")).unwrap();
        std::os::unix::fs::symlink("n.ipynb", d.path().join("sub/other.ipynb")).unwrap();
        let direct = r.notebook("sub/n.ipynb").unwrap();
        assert_eq!(r.notebook("alias/n.ipynb").unwrap(), direct);
        assert_eq!(r.notebook("alias/n.ipynb").unwrap().rel, "sub/n.ipynb");
        assert_eq!(r.notebook("sub/other.ipynb").unwrap().rel, "sub/n.ipynb");
        // A file not created yet, through the alias, is the same future file.
        assert_eq!(r.notebook("alias/new.ipynb").unwrap().rel, "sub/new.ipynb");
    }

    #[test]
    fn impossible_names_are_refused() {
        let (d, r) = root();
        assert!(matches!(
            r.notebook("a\0b.ipynb"),
            Err(PathError::Invalid { .. })
        ));
        let long = format!("{}.ipynb", "x".repeat(300));
        let err = r.notebook(&long).unwrap_err();
        assert!(err.to_string().contains("255"), "{err}");
        let deep = format!("{}/a.ipynb", vec!["d".repeat(200); 25].join("/"));
        assert!(matches!(r.notebook(&deep), Err(PathError::Invalid { .. })));
        std::fs::create_dir(d.path().join("adir.ipynb")).unwrap();
        let err = r.notebook("adir.ipynb").unwrap_err();
        assert!(err.to_string().contains("a folder"), "{err}");
    }

    #[test]
    fn dangling_symlinks_resolve_through_their_target() {
        let (d, r) = root();
        std::os::unix::fs::symlink("/nonexistent-outside/x.ipynb", d.path().join("out.ipynb"))
            .unwrap();
        std::os::unix::fs::symlink("../../x.ipynb", d.path().join("sub/up.ipynb")).unwrap();
        std::os::unix::fs::symlink("later.ipynb", d.path().join("in.ipynb")).unwrap();
        assert!(matches!(
            r.notebook("out.ipynb"),
            Err(PathError::OutsideRoot { .. })
        ));
        assert!(matches!(
            r.notebook("sub/up.ipynb"),
            Err(PathError::OutsideRoot { .. })
        ));
        assert_eq!(r.notebook("in.ipynb").unwrap().rel, "later.ipynb");
    }
}
