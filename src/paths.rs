//! Confinement of user-given paths to the configured root (SPEC §1 `--root`).
//!
//! A notebook path from an agent is resolved against the root; `..` that climbs out, absolute
//! paths elsewhere, and symlinks whose target leaves the root are refused. The notebook's
//! identity everywhere else (store, sessions) is its path relative to the root, `/`-separated.

use std::path::{Component, Path, PathBuf};

/// A path under the root: both forms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RootedPath {
    /// Relative to the root, `/`-separated, no `.` or `..` (e.g. `analysis/q3.ipynb`).
    pub rel: String,
    /// Absolute path on disk.
    pub abs: PathBuf,
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
    /// The root itself cannot be resolved.
    #[error("the notebook root {root} cannot be used: {reason}; create the folder or pass an existing one with --root")]
    Root {
        root: PathBuf,
        /// Why (not a `source`, so the message does not repeat it in a cause chain).
        reason: std::io::Error,
    },
}

/// The canonical root directory.
#[derive(Debug, Clone)]
pub struct Root {
    canonical: PathBuf,
}

impl Root {
    /// Canonicalizes `dir` (which must exist).
    pub fn new(dir: &Path) -> Result<Root, PathError> {
        let canonical = dir.canonicalize().map_err(|reason| PathError::Root {
            root: dir.to_path_buf(),
            reason,
        })?;
        Ok(Root { canonical })
    }

    /// The canonical root path.
    pub fn path(&self) -> &Path {
        &self.canonical
    }

    /// Resolves a notebook path (must end in `.ipynb`).
    pub fn notebook(&self, user: &str) -> Result<RootedPath, PathError> {
        let p = self.resolve(user)?;
        if !p.rel.ends_with(".ipynb") {
            return Err(PathError::NotNotebook {
                path: user.to_string(),
            });
        }
        Ok(p)
    }

    /// Resolves any path under the root. The file need not exist; its deepest existing
    /// ancestor is canonicalized so that symlinks cannot lead outside.
    pub fn resolve(&self, user: &str) -> Result<RootedPath, PathError> {
        let user_trimmed = user.trim();
        if user_trimmed.is_empty() {
            return Err(PathError::Empty);
        }
        let outside = || PathError::OutsideRoot {
            path: user.to_string(),
            root: self.canonical.clone(),
        };
        let given = Path::new(user_trimmed);
        let relative: PathBuf = if given.is_absolute() {
            // Accept absolute paths that point inside the root (after canonicalizing).
            let anchored = canonicalize_existing_prefix(given).ok_or_else(outside)?;
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
                Component::Normal(s) => parts.push(s.to_string_lossy().to_string()),
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
        // Symlinks: the real location of the deepest existing ancestor must be inside.
        let real = canonicalize_existing_prefix(&abs).ok_or_else(outside)?;
        if !real.starts_with(&self.canonical) {
            return Err(outside());
        }
        Ok(RootedPath {
            rel: parts.join("/"),
            abs,
        })
    }
}

/// Canonicalizes the longest existing prefix of `path` and appends the rest.
fn canonicalize_existing_prefix(path: &Path) -> Option<PathBuf> {
    let mut existing = path.to_path_buf();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(c) => {
                return Some(rest.iter().rev().fold(c, |p, s| p.join(s)));
            }
            Err(_) => {
                let name = existing.file_name()?.to_os_string();
                rest.push(name);
                existing = existing.parent()?.to_path_buf();
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
}
