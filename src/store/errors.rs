//! Typed SQLite failures. Callers decide what to do by kind (retry a busy database, tell the
//! agent the disk is full, stop on corruption) instead of matching message strings.

use rusqlite::ErrorCode;

/// What kind of problem the state database had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// Another connection holds the lock longer than the busy timeout (`SQLITE_BUSY`/`LOCKED`).
    Busy,
    /// The disk or the file-size limit is full (`SQLITE_FULL`).
    Full,
    /// The operating system failed a read or write (`SQLITE_IOERR`, `SQLITE_CANTOPEN`).
    Io,
    /// The file is read-only (`SQLITE_READONLY`, a read-only mount or permissions).
    ReadOnly,
    /// The file is damaged or not a database (`SQLITE_CORRUPT`, `SQLITE_NOTADB`).
    Corrupt,
    /// A constraint was violated (e.g. a duplicate id).
    Constraint,
    /// The database was written by a newer version, or holds a value this version cannot read.
    Incompatible,
    /// Anything else.
    Other,
}

impl StoreErrorKind {
    /// Classifies a rusqlite error.
    pub fn of(e: &rusqlite::Error) -> StoreErrorKind {
        match e {
            rusqlite::Error::SqliteFailure(f, _) => match f.code {
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => StoreErrorKind::Busy,
                ErrorCode::DiskFull => StoreErrorKind::Full,
                ErrorCode::SystemIoFailure | ErrorCode::CannotOpen => StoreErrorKind::Io,
                ErrorCode::ReadOnly => StoreErrorKind::ReadOnly,
                ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => StoreErrorKind::Corrupt,
                ErrorCode::ConstraintViolation => StoreErrorKind::Constraint,
                _ => StoreErrorKind::Other,
            },
            rusqlite::Error::FromSqlConversionFailure(..) => StoreErrorKind::Incompatible,
            _ => StoreErrorKind::Other,
        }
    }

    /// What the operator can do about it, for error messages.
    pub fn advice(self) -> &'static str {
        match self {
            StoreErrorKind::Busy => {
                "another process holds the database lock; retry, and make sure only one server uses this data dir"
            }
            StoreErrorKind::Full => "free disk space in the data dir",
            StoreErrorKind::Io => "check the disk and the data dir's file system",
            StoreErrorKind::ReadOnly => "make the data dir writable",
            StoreErrorKind::Corrupt => {
                "the state database is damaged: stop the server and restore or move state.db aside"
            }
            StoreErrorKind::Constraint => "this is a bug in jupyter-mcp; please report it",
            StoreErrorKind::Incompatible => {
                "it was written by a newer jupyter-mcp: use that version or a fresh data dir"
            }
            StoreErrorKind::Other => "see the server log",
        }
    }

    /// True for conditions that may clear by themselves or by the operator (busy, full, I/O,
    /// read-only): worth retrying later.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            StoreErrorKind::Busy
                | StoreErrorKind::Full
                | StoreErrorKind::Io
                | StoreErrorKind::ReadOnly
        )
    }
}

impl std::fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreErrorKind::Busy => "database busy",
            StoreErrorKind::Full => "disk full",
            StoreErrorKind::Io => "I/O error",
            StoreErrorKind::ReadOnly => "read-only",
            StoreErrorKind::Corrupt => "database corrupt",
            StoreErrorKind::Constraint => "constraint violated",
            StoreErrorKind::Incompatible => "incompatible data",
            StoreErrorKind::Other => "error",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_codes_map_to_kinds() {
        let err = |code: i32| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        assert_eq!(
            StoreErrorKind::of(&err(rusqlite::ffi::SQLITE_BUSY)),
            StoreErrorKind::Busy
        );
        assert_eq!(
            StoreErrorKind::of(&err(rusqlite::ffi::SQLITE_FULL)),
            StoreErrorKind::Full
        );
        assert_eq!(
            StoreErrorKind::of(&err(rusqlite::ffi::SQLITE_IOERR)),
            StoreErrorKind::Io
        );
        assert_eq!(
            StoreErrorKind::of(&err(rusqlite::ffi::SQLITE_CORRUPT)),
            StoreErrorKind::Corrupt
        );
        assert_eq!(
            StoreErrorKind::of(&err(rusqlite::ffi::SQLITE_READONLY)),
            StoreErrorKind::ReadOnly
        );
        assert!(StoreErrorKind::Full.is_transient());
        assert!(!StoreErrorKind::Corrupt.is_transient());
    }
}
