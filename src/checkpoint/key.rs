//! The checkpoint signing key (SPEC §2): `JUPYTER_MCP_SECRET` when set, else
//! `DATA_DIR/secret.key`, 32 bytes from the OS random generator, created with mode 0600 from
//! its first byte. There is no built-in fallback: without a usable key nothing is signed or
//! verified. The key never appears in logs, errors or tool results (its `Debug` is redacted).
//!
//! `JUPYTER_MCP_SECRET` is read as hex when it is made of hex digits only, has an even length
//! and gives at least 32 bytes (e.g. `openssl rand -hex 32`); otherwise its raw bytes are the
//! key and there must be at least 32 of them.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use super::CheckpointError;

/// Environment variable holding the key.
pub const SECRET_ENV: &str = "JUPYTER_MCP_SECRET";
/// File name of the generated key in the data dir.
pub const KEY_FILE: &str = "secret.key";
/// Key length generated and required in the key file.
pub const KEY_LEN: usize = 32;

/// Where the key came from (for messages; never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `JUPYTER_MCP_SECRET`.
    Env,
    /// The key file (existing or just created).
    File(PathBuf),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Env => write!(f, "{SECRET_ENV}"),
            KeySource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The HMAC key. Zeroed on drop; `Debug` shows nothing of it.
pub struct SecretKey {
    bytes: Vec<u8>,
    source: KeySource,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey(<redacted>, from {})", self.source)
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        for b in self.bytes.iter_mut() {
            *b = 0;
        }
        std::hint::black_box(&self.bytes);
    }
}

fn key_error(message: impl Into<String>) -> CheckpointError {
    CheckpointError::Key {
        message: message.into(),
    }
}

impl SecretKey {
    /// The key bytes, for the HMAC only.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Where it came from.
    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// The key from `env` (the value of `JUPYTER_MCP_SECRET`, if set), else from the key file
    /// in `data_dir`, created if missing. The process is made non-dumpable first, so that
    /// other processes of the same (non-root) user, kernels included, cannot read its
    /// memory or `/proc/<pid>/environ` (where `JUPYTER_MCP_SECRET` stays).
    pub fn resolve(data_dir: &Path, env: Option<&OsStr>) -> Result<SecretKey, CheckpointError> {
        if let Err(e) =
            rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        {
            tracing::warn!("could not make the server non-dumpable (prctl): {e}");
        }
        match env {
            Some(v) => SecretKey::from_env_value(v),
            None => SecretKey::load_or_create(data_dir),
        }
    }

    /// Parses a `JUPYTER_MCP_SECRET` value (see the module docs).
    pub fn from_env_value(value: &OsStr) -> Result<SecretKey, CheckpointError> {
        let raw = value.as_bytes();
        if raw.is_empty() {
            return Err(key_error(format!(
                "{SECRET_ENV} is set but empty: set it to 64 hex characters (e.g. the output of \
                 `openssl rand -hex 32`) or unset it to use DATA_DIR/{KEY_FILE}"
            )));
        }
        let is_hex = raw.len().is_multiple_of(2) && raw.iter().all(u8::is_ascii_hexdigit);
        let bytes = if is_hex && raw.len() >= 2 * KEY_LEN {
            std::str::from_utf8(raw)
                .ok()
                .and_then(super::name::unhex)
                .ok_or_else(|| key_error(format!("{SECRET_ENV} is not valid hex")))?
        } else {
            raw.to_vec()
        };
        if bytes.len() < KEY_LEN {
            return Err(key_error(format!(
                "{SECRET_ENV} is too short ({} bytes): give 64 hex characters (32 bytes, e.g. \
                 `openssl rand -hex 32`) or at least 32 characters",
                bytes.len()
            )));
        }
        Ok(SecretKey {
            bytes,
            source: KeySource::Env,
        })
    }

    /// Reads `data_dir/secret.key`, creating it (32 random bytes, mode 0600) if it does not
    /// exist. Refuses a key file of the wrong length or readable by other users.
    pub fn load_or_create(data_dir: &Path) -> Result<SecretKey, CheckpointError> {
        let path = data_dir.join(KEY_FILE);
        match read_key_file(&path) {
            Ok(k) => return Ok(k),
            Err(ReadKey::Missing) => {}
            Err(ReadKey::Bad(e)) => return Err(e),
        }
        fs::create_dir_all(data_dir).map_err(|e| {
            key_error(format!(
                "cannot create the data directory {} for the checkpoint key: {e}",
                data_dir.display()
            ))
        })?;
        create_key_file(data_dir, &path)?;
        match read_key_file(&path) {
            Ok(k) => Ok(k),
            Err(ReadKey::Missing) => Err(key_error(format!(
                "the checkpoint key {} vanished right after it was created",
                path.display()
            ))),
            Err(ReadKey::Bad(e)) => Err(e),
        }
    }
}

enum ReadKey {
    Missing,
    Bad(CheckpointError),
}

fn read_key_file(path: &Path) -> Result<SecretKey, ReadKey> {
    let mut f = match OpenOptions::new()
        .read(true)
        // Non-blocking: a FIFO in its place is refused below instead of hanging the server.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ReadKey::Missing),
        Err(e) => {
            return Err(ReadKey::Bad(key_error(format!(
                "cannot open the checkpoint key {} ({e}); it must be a regular file readable by \
                 this user, not a symlink",
                path.display()
            ))))
        }
    };
    let meta = f
        .metadata()
        .map_err(|e| ReadKey::Bad(key_error(format!("cannot stat {}: {e}", path.display()))))?;
    if !meta.is_file() {
        return Err(ReadKey::Bad(key_error(format!(
            "the checkpoint key {} is not a regular file",
            path.display()
        ))));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o007 != 0 {
        return Err(ReadKey::Bad(key_error(format!(
            "the checkpoint key {} is accessible to other users (mode {mode:04o}): run `chmod 600 {}`",
            path.display(),
            path.display()
        ))));
    }
    if mode & 0o070 != 0 {
        // A Kubernetes fsGroup volume makes files group-readable; allowed, but said once.
        tracing::warn!(
            "the checkpoint key {} is group-accessible (mode {mode:04o}); 0600 is recommended",
            path.display()
        );
    }
    let mut bytes = Vec::with_capacity(KEY_LEN + 1);
    (&mut f)
        .take(KEY_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ReadKey::Bad(key_error(format!("cannot read {}: {e}", path.display()))))?;
    if bytes.len() != KEY_LEN {
        let n = bytes.len();
        bytes.iter_mut().for_each(|b| *b = 0);
        return Err(ReadKey::Bad(key_error(format!(
            "the checkpoint key {} holds {n} bytes instead of {KEY_LEN}: it was damaged or \
             replaced. Restore it from a backup (checkpoints signed with it cannot be verified \
             otherwise), or move it away to create a new key (existing checkpoints will then be \
             refused)",
            path.display()
        ))));
    }
    Ok(SecretKey {
        bytes,
        source: KeySource::File(path.to_path_buf()),
    })
}

/// Writes 32 random bytes into a temp file created 0600 (`create_new`), fsyncs it and links it
/// to `path`, so that the key file appears complete or not at all; if another process won the
/// race, its key is kept.
fn create_key_file(dir: &Path, path: &Path) -> Result<(), CheckpointError> {
    let mut key = [0u8; KEY_LEN];
    getrandom::fill(&mut key).map_err(|e| {
        key_error(format!(
            "the operating system's random number generator failed ({e}); no checkpoint key \
             was created"
        ))
    })?;
    let tmp = dir.join(format!(".{KEY_FILE}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let write_new = |target: &Path| -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(target)?;
        if let Err(e) = f.write_all(&key).and_then(|_| f.sync_all()) {
            let _ = fs::remove_file(target);
            return Err(e);
        }
        Ok(())
    };
    let result = write_new(&tmp).and_then(|_| {
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            // Filesystems without hard links: create the file itself (still 0600 from the
            // start; a reader racing with this write sees a short file and refuses it).
            Err(e)
                if e.kind() == io::ErrorKind::Unsupported
                    || e.raw_os_error() == Some(libc::EPERM) =>
            {
                match write_new(path) {
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                    other => other,
                }
            }
            other => other,
        }
    });
    key.iter_mut().for_each(|b| *b = 0);
    std::hint::black_box(&key);
    result.map_err(|e| {
        key_error(format!(
            "cannot create the checkpoint key {}: {e}",
            path.display()
        ))
    })?;
    super::files::fsync_dir(dir).map_err(|e| {
        key_error(format!(
            "cannot sync the data directory {}: {e}",
            dir.display()
        ))
    })?;
    tracing::info!("created the checkpoint signing key {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    #[test]
    fn created_with_mode_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let k1 = SecretKey::resolve(&data, None).unwrap();
        let path = data.join(KEY_FILE);
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 32);
        assert_eq!(k1.source(), &KeySource::File(path.clone()));
        let k2 = SecretKey::resolve(&data, None).unwrap();
        assert_eq!(k1.bytes(), k2.bytes());
        assert_ne!(k1.bytes(), &[0u8; 32]);
        // no temp file left behind
        let names: Vec<_> = fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from(KEY_FILE)]);
        // Debug never shows key bytes
        let dbg = format!("{k1:?}");
        assert!(
            dbg.contains("redacted") && !dbg.contains(&crate::checkpoint::name::hex(k1.bytes()))
        );
    }

    #[test]
    fn no_fallback_key() {
        let dir = tempfile::tempdir().unwrap();
        // The data dir cannot be created (a file is in the way): an error, never a key.
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"x").unwrap();
        assert!(SecretKey::resolve(&blocker.join("data"), None).is_err());
        // A damaged key file is refused, not replaced.
        let data = dir.path().join("d2");
        fs::create_dir(&data).unwrap();
        let path = data.join(KEY_FILE);
        fs::write(&path, b"short").unwrap();
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let e = SecretKey::resolve(&data, None).unwrap_err().to_string();
        assert!(e.contains("5 bytes"), "{e}");
        assert_eq!(fs::read(&path).unwrap(), b"short");
        // World-readable key refused.
        fs::write(&path, [7u8; 32]).unwrap();
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        let e = SecretKey::resolve(&data, None).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        // Empty or short env values are refused rather than replaced.
        assert!(SecretKey::resolve(&data, Some(OsStr::new(""))).is_err());
        assert!(SecretKey::resolve(&data, Some(OsStr::new("short"))).is_err());
        assert!(SecretKey::resolve(&data, Some(OsStr::new(&"ab".repeat(8)))).is_err());
    }

    #[test]
    fn env_hex_or_raw() {
        let hexkey = "0123456789abcdef".repeat(4);
        let k = SecretKey::from_env_value(OsStr::new(&hexkey)).unwrap();
        assert_eq!(k.bytes().len(), 32);
        assert_eq!(k.bytes()[..2], [0x01, 0x23]);
        assert_eq!(k.source(), &KeySource::Env);
        let raw = "correct horse battery staple, and more words";
        let k = SecretKey::from_env_value(OsStr::new(raw)).unwrap();
        assert_eq!(k.bytes(), raw.as_bytes());
        // Errors never echo the value.
        let e = SecretKey::from_env_value(OsStr::new("hunter2"))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
