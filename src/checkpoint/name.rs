//! Checkpoint names and where their files live.
//!
//! A name is what the agent chose ("before-tuning"); it never becomes part of a path. Files are
//! named from hashes: `DATA_DIR/checkpoints/<sha256(notebook)[..32]>/<stem>.json` (metadata)
//! and `<stem>.<generation>.dill` (data), with `stem = sha256(notebook \0 name)[..32]`.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Longest accepted name, in characters.
pub const MAX_NAME_CHARS: usize = 128;

/// Why a name was refused (the caller wraps it with the name itself).
pub fn validate_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err("it is longer than 128 characters");
    }
    if name.trim() != name {
        return Err("it starts or ends with whitespace");
    }
    if name.contains('/') || name.contains('\\') {
        return Err("it contains a path separator (/ or \\)");
    }
    if name.contains("..") || name == "." {
        return Err("it contains '..' or is '.'");
    }
    if name.chars().any(char::is_control) {
        return Err("it contains a control character");
    }
    Ok(())
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Bytes of lower-case or upper-case hex; None if not hex.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Directory of one notebook's checkpoints under `checkpoints_root`.
pub fn notebook_dir(checkpoints_root: &Path, notebook: &str) -> PathBuf {
    let digest = Sha256::digest(notebook.as_bytes());
    checkpoints_root.join(&hex(&digest)[..32])
}

/// The files of one checkpoint (notebook + name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointPaths {
    /// `DATA_DIR/checkpoints/<notebook-hash>`.
    pub dir: PathBuf,
    /// `sha256(notebook \0 name)[..32]`.
    pub stem: String,
}

impl CheckpointPaths {
    /// Paths for `name` of `notebook` (relative path under the root). The name must be valid.
    pub fn new(checkpoints_root: &Path, notebook: &str, name: &str) -> CheckpointPaths {
        let mut h = Sha256::new();
        h.update(notebook.as_bytes());
        h.update([0u8]);
        h.update(name.as_bytes());
        CheckpointPaths {
            dir: notebook_dir(checkpoints_root, notebook),
            stem: hex(&h.finalize())[..32].to_string(),
        }
    }

    /// The metadata file (the commit point of a save).
    pub fn meta(&self) -> PathBuf {
        self.dir.join(format!("{}.json", self.stem))
    }

    /// File name of the data file of a generation.
    pub fn data_file_name(&self, generation: &str) -> String {
        format!("{}.{generation}.dill", self.stem)
    }

    /// The data file of a generation.
    pub fn data(&self, generation: &str) -> PathBuf {
        self.dir.join(self.data_file_name(generation))
    }

    /// True for a file name that is a data file of this checkpoint (any generation).
    pub fn is_own_data_file(&self, file_name: &str) -> bool {
        file_name
            .strip_prefix(&self.stem)
            .and_then(|r| r.strip_prefix('.'))
            .and_then(|r| r.strip_suffix(".dill"))
            .is_some_and(is_generation)
    }

    /// A fresh temp file for the kernel to write into (same directory, so rename is atomic).
    pub fn temp_data(&self) -> PathBuf {
        self.dir
            .join(format!(".tmp-{}.dill", uuid::Uuid::new_v4().simple()))
    }
}

/// A generation id: 32 lower-case hex characters.
pub fn new_generation() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// True for a well-formed generation id.
pub fn is_generation(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, ok: bool) {
        assert_eq!(validate_name(name).is_ok(), ok, "{name:?}");
    }

    #[test]
    fn names() {
        for good in [
            "a",
            "before tuning",
            "run-3_final",
            "v1.2",
            "auto-1",
            "é数据",
            &"x".repeat(128),
        ] {
            check(good, true);
        }
        for bad in [
            "",
            "../x",
            "..",
            ".",
            "a/b",
            "/abs",
            "a\\b",
            "a..b",
            "nul\0byte",
            "new\nline",
            "tab\t",
            " lead",
            "trail ",
            &"x".repeat(129),
            &"é".repeat(300),
        ] {
            check(bad, false);
        }
    }

    #[test]
    fn paths_derive_from_hashes() {
        let root = Path::new("/data/checkpoints");
        let a = CheckpointPaths::new(root, "nb.ipynb", "x");
        let b = CheckpointPaths::new(root, "nb.ipynb", "y");
        let c = CheckpointPaths::new(root, "other.ipynb", "x");
        assert_eq!(a.dir, b.dir);
        assert_ne!(a.dir, c.dir);
        assert_ne!(a.stem, b.stem);
        assert_ne!(a.stem, c.stem);
        // "a" + "b\0c" and "a\0b" + "c" cannot collide: the separator is a NUL, which
        // neither a valid name nor a notebook path contains.
        assert_eq!(a.stem.len(), 32);
        assert!(a.meta().starts_with(root));
        let g = new_generation();
        assert!(is_generation(&g));
        assert!(a.is_own_data_file(&a.data_file_name(&g)));
        assert!(!b.is_own_data_file(&a.data_file_name(&g)));
        assert!(!a.is_own_data_file(&format!("{}.x.dill", a.stem)));
        assert!(a
            .temp_data()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(".tmp-"));
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
        assert_eq!(unhex("000fFF"), Some(vec![0, 15, 255]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }
}
