//! The error type of this crate: [`NotebookError`].
//!
//! Every message is written for the human or AI agent that has to act on it: it says what
//! happened and, where there is one, what to do about it. Errors that concern a file name
//! that file in their `Display` (either through the `path` field of [`NotebookError::Io`] /
//! [`NotebookError::AlreadyExists`] or by wrapping a parse error in
//! [`NotebookError::AtPath`]).

use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong while reading, checking or writing a notebook.
///
/// Parse errors ([`InvalidJson`](Self::InvalidJson),
/// [`UnsupportedVersion`](Self::UnsupportedVersion), [`Invalid`](Self::Invalid)) come from
/// [`Notebook::parse`](crate::Notebook::parse); the file functions in [`crate::io`] wrap them in
/// [`AtPath`](Self::AtPath) so the message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotebookError {
    /// The bytes are not valid JSON (as decided by `serde_json`, which like Python's `json`
    /// module requires UTF-8). `line` and `column` are 1-based positions of the problem.
    #[error(
        "the notebook is not valid JSON (line {line}, column {column}: {message}); \
         fix the JSON syntax by hand or restore the file from version control or a backup"
    )]
    InvalidJson {
        /// 1-based line of the syntax error.
        line: usize,
        /// 1-based column of the syntax error.
        column: usize,
        /// The JSON parser's description of the problem.
        message: String,
    },

    /// Valid JSON, but not an nbformat v4 notebook object: the top level is not an object, or
    /// `nbformat` is missing or not 4. `found` describes what was there (e.g. `"nbformat 3"`).
    #[error(
        "unsupported notebook format ({found}): only nbformat v4 notebooks are supported; \
         convert the file with `jupyter nbconvert --to notebook --nbformat 4 <file>` and try again"
    )]
    UnsupportedVersion {
        /// What was found instead of `"nbformat": 4`.
        found: String,
    },

    /// An nbformat v4 notebook whose structure cannot be read losslessly, e.g. `cells` is not
    /// a list or a cell has an unknown `cell_type`. `what` names the cell index and the problem.
    #[error("the notebook is not a valid nbformat v4 document: {what}")]
    Invalid {
        /// Which part is wrong and how to fix it.
        what: String,
    },

    /// An operating-system error while `action` (e.g. "read", "rename the temporary file onto")
    /// was being done to `path`.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// What was being done, as a verb phrase that reads before the path.
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// [`create_new`](crate::io::create_new) refused to overwrite an existing file.
    #[error(
        "{} already exists; choose another file name, or open the existing notebook instead",
        path.display()
    )]
    AlreadyExists {
        /// The file that already exists.
        path: PathBuf,
    },

    /// The file is larger than the configured cap (`--max-notebook-bytes`); it was not read.
    #[error(
        "{} is {bytes} bytes, more than the {limit}-byte limit for notebooks; split or clear \
         its outputs (e.g. `jupyter nbconvert --clear-output`), or raise --max-notebook-bytes",
        path.display()
    )]
    TooLarge {
        /// The notebook file.
        path: PathBuf,
        /// Its size (or the bytes read before giving up).
        bytes: u64,
        /// The cap in bytes.
        limit: u64,
    },

    /// A parse error (or other error) about the notebook stored at `path`.
    #[error("{}: {source}", path.display())]
    AtPath {
        /// The notebook file.
        path: PathBuf,
        /// The error found in its contents.
        #[source]
        source: Box<NotebookError>,
    },
}

impl NotebookError {
    /// Builds [`NotebookError::Io`] for `path`.
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> NotebookError {
        NotebookError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Wraps `self` in [`NotebookError::AtPath`] unless it already names a path.
    pub(crate) fn at_path(self, path: &Path) -> NotebookError {
        match self {
            NotebookError::Io { .. }
            | NotebookError::AlreadyExists { .. }
            | NotebookError::TooLarge { .. }
            | NotebookError::AtPath { .. } => self,
            other => NotebookError::AtPath {
                path: path.to_path_buf(),
                source: Box::new(other),
            },
        }
    }

    /// Builds [`NotebookError::Invalid`].
    pub(crate) fn invalid(what: impl Into<String>) -> NotebookError {
        NotebookError::Invalid { what: what.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(err: NotebookError, expected: &[&str]) {
        let text = err.to_string();
        for part in expected {
            assert!(text.contains(part), "{text:?} should contain {part:?}");
        }
    }

    #[test]
    fn messages_name_the_problem_and_the_fix() {
        check(
            NotebookError::UnsupportedVersion {
                found: "nbformat 3".into(),
            }
            .at_path(Path::new("/x/a.ipynb")),
            &[
                "/x/a.ipynb: ",
                "nbformat 3",
                "only nbformat v4",
                "--nbformat 4",
            ],
        );
        check(
            NotebookError::io("read", Path::new("b.ipynb"), io::ErrorKind::NotFound.into()),
            &["could not read b.ipynb: "],
        );
        check(
            NotebookError::AlreadyExists {
                path: "c.ipynb".into(),
            }
            .at_path(Path::new("other")),
            &["c.ipynb already exists"],
        );
        check(
            NotebookError::InvalidJson {
                line: 3,
                column: 7,
                message: "EOF".into(),
            },
            &["line 3, column 7: EOF", "restore"],
        );
    }
}
