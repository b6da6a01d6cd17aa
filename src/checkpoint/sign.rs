//! Signing: HMAC-SHA256 and SHA-256 of a data file streamed in constant memory, and the
//! metadata signature that binds a checkpoint's metadata (name, notebook, generation, data
//! digest, ...) to its data.
//!
//! Streaming: at save, the file is read in 1 MiB chunks from a pool of three buffers; the
//! calling thread feeds the HMAC while a helper thread feeds the SHA-256, so on two free cores
//! the two hashes cost the time of one (memory stays at 3 MiB whatever the file size). At
//! load only the HMAC is computed ([`stream_mac`], one buffer).
//!
//! Metadata signature: `HMAC(key, "jupyter-mcp checkpoint metadata v1\n" || canonical(meta))`
//! where `meta` is the metadata JSON object without its `signature` member and `canonical`
//! writes objects with keys sorted, no whitespace. The metadata holds the data file's HMAC,
//! SHA-256 and size, so a valid signature on metadata that names another checkpoint, or data
//! that is not the data it describes, is refused.

use std::io::{self, Read};
use std::sync::{mpsc, Arc};

use hmac::{Hmac, KeyInit as _, Mac as _};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::key::SecretKey;

/// HMAC-SHA256.
pub type HmacSha256 = Hmac<Sha256>;

/// Chunk size of the streaming hash.
pub const CHUNK: usize = 1 << 20;
const POOL: usize = 3;

const METADATA_DOMAIN: &[u8] = b"jupyter-mcp checkpoint metadata v1\n";

/// A MAC keyed with `key`.
pub fn mac(key: &SecretKey) -> HmacSha256 {
    // HMAC accepts keys of any length.
    match HmacSha256::new_from_slice(key.bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    }
}

/// What streaming a file produced: its size, SHA-256, and the MAC state over all its bytes.
pub struct Streamed {
    /// Bytes read.
    pub bytes: u64,
    /// SHA-256 of the bytes.
    pub sha256: [u8; 32],
    /// HMAC state after the last byte: finalize it, or check it with `verify_slice`.
    pub mac: HmacSha256,
}

struct Chunk {
    buf: Vec<u8>,
    len: usize,
}

/// Reads `reader` to its end, feeding every byte to `mac` and to a SHA-256.
pub fn stream(mut reader: impl Read, mut mac: HmacSha256) -> io::Result<Streamed> {
    let (work_tx, work_rx) = mpsc::sync_channel::<Arc<Chunk>>(POOL);
    let (free_tx, free_rx) = mpsc::sync_channel::<Arc<Chunk>>(POOL);
    std::thread::scope(|scope| {
        let sha = scope.spawn(move || {
            let mut sha = Sha256::new();
            for chunk in work_rx {
                sha.update(&chunk.buf[..chunk.len]);
                // The reader may have finished; then the buffer is simply dropped.
                let _ = free_tx.send(chunk);
            }
            sha.finalize()
        });
        let mut allocated = 0usize;
        let mut total = 0u64;
        let result = loop {
            let mut chunk = if allocated < POOL {
                allocated += 1;
                Chunk {
                    buf: vec![0u8; CHUNK],
                    len: 0,
                }
            } else {
                match free_rx.recv() {
                    // Our own clone was dropped before the helper could hand it back.
                    Ok(arc) => match Arc::try_unwrap(arc) {
                        Ok(c) => c,
                        Err(_) => break Err(io::Error::other("hash buffer still shared")),
                    },
                    Err(_) => break Err(io::Error::other("the hashing thread stopped")),
                }
            };
            match fill(&mut reader, &mut chunk.buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    chunk.len = n;
                    total += n as u64;
                    let chunk = Arc::new(chunk);
                    if work_tx.send(chunk.clone()).is_err() {
                        break Err(io::Error::other("the hashing thread stopped"));
                    }
                    mac.update(&chunk.buf[..n]);
                }
                Err(e) => break Err(e),
            }
        };
        drop(work_tx);
        let sha = sha
            .join()
            .map_err(|_| io::Error::other("the hashing thread panicked"))?;
        result.map(|()| Streamed {
            bytes: total,
            sha256: sha.into(),
            mac,
        })
    })
}

/// Reads `reader` to its end feeding only `mac` (one 1 MiB buffer). Returns the byte count
/// and the MAC state. Used by verification: a valid HMAC proves the bytes are the signed ones,
/// so their SHA-256 is the signed one too and need not be recomputed.
pub fn stream_mac(mut reader: impl Read, mut mac: HmacSha256) -> io::Result<(u64, HmacSha256)> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = fill(&mut reader, &mut buf)?;
        if n == 0 {
            return Ok((total, mac));
        }
        mac.update(&buf[..n]);
        total += n as u64;
    }
}

/// Reads until `buf` is full or the reader ends; returns the bytes read.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Canonical encoding: objects with keys sorted by their UTF-8 bytes, no whitespace, strings
/// and numbers as serde_json writes them.
pub fn canonical_json(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                write_canonical(val, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

fn metadata_mac(key: &SecretKey, meta: &Value) -> HmacSha256 {
    let mut unsigned = meta.clone();
    if let Value::Object(m) = &mut unsigned {
        m.remove("signature");
    }
    let mut m = mac(key);
    m.update(METADATA_DOMAIN);
    m.update(&canonical_json(&unsigned));
    m
}

/// The signature of a metadata object (its `signature` member, if any, is ignored).
pub fn sign_metadata(key: &SecretKey, meta: &Value) -> [u8; 32] {
    metadata_mac(key, meta).finalize().into_bytes().into()
}

/// True when `meta.signature` is the signature of the rest of `meta` (constant-time check).
pub fn verify_metadata(key: &SecretKey, meta: &Value) -> bool {
    let Some(sig) = meta
        .get("signature")
        .and_then(Value::as_str)
        .and_then(super::name::unhex)
    else {
        return false;
    };
    metadata_mac(key, meta).verify_slice(&sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(b: u8) -> SecretKey {
        let hex = super::super::name::hex(&[b; 32]);
        SecretKey::from_env_value(std::ffi::OsStr::new(&hex)).unwrap()
    }

    fn data(n: usize) -> Vec<u8> {
        // Deterministic, not constant: a byte flip anywhere changes the hash.
        let mut x = 0x2545F4914F6CDD1Du64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn streaming_equals_one_shot() {
        let k = key(1);
        for n in [
            0,
            1,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            3 * CHUNK + 12345,
            7 * CHUNK,
        ] {
            let d = data(n);
            // A reader that returns short reads, to exercise `fill`.
            struct Short<'a>(&'a [u8]);
            impl Read for Short<'_> {
                fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                    let k = buf.len().min(self.0.len()).min(70_001);
                    buf[..k].copy_from_slice(&self.0[..k]);
                    self.0 = &self.0[k..];
                    Ok(k)
                }
            }
            let s = stream(Short(&d), mac(&k)).unwrap();
            let mut one = mac(&k);
            one.update(&d);
            let one_tag = one.finalize().into_bytes();
            assert_eq!(s.bytes, n as u64);
            assert_eq!(s.sha256, <[u8; 32]>::from(Sha256::digest(&d)), "n={n}");
            assert!(s.mac.verify_slice(&one_tag).is_ok(), "n={n}");
            let (bytes, only) = stream_mac(Short(&d), mac(&k)).unwrap();
            assert_eq!(bytes, n as u64);
            assert!(only.verify_slice(&one_tag).is_ok(), "n={n}");
        }
    }

    #[test]
    fn tampered_stream_fails_verification() {
        let k = key(2);
        let d = data(2 * CHUNK + 99);
        let tag = stream(&d[..], mac(&k)).unwrap().mac.finalize().into_bytes();
        for pos in [0, CHUNK, d.len() - 1] {
            let mut t = d.clone();
            t[pos] ^= 0x01;
            assert!(stream(&t[..], mac(&k))
                .unwrap()
                .mac
                .verify_slice(&tag)
                .is_err());
        }
        assert!(stream(&d[..d.len() - 1], mac(&k))
            .unwrap()
            .mac
            .verify_slice(&tag)
            .is_err());
        let mut longer = d.clone();
        longer.push(0);
        assert!(stream(&longer[..], mac(&k))
            .unwrap()
            .mac
            .verify_slice(&tag)
            .is_err());
        assert!(stream(&d[..], mac(&key(3)))
            .unwrap()
            .mac
            .verify_slice(&tag)
            .is_err());
        assert!(stream(&d[..], mac(&k))
            .unwrap()
            .mac
            .verify_slice(&tag)
            .is_ok());
    }

    #[test]
    fn canonical_is_key_order_independent() {
        let a = json!({"b": 1, "a": [true, null, "x\n\"y"], "c": {"z": 1, "y": 2}});
        let b: Value =
            serde_json::from_str(r#"{"c":{"y":2,"z":1},"a":[true,null,"x\n\"y"],"b":1}"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(
            String::from_utf8(canonical_json(&a)).unwrap(),
            r#"{"a":[true,null,"x\n\"y"],"b":1,"c":{"y":2,"z":1}}"#
        );
    }

    #[test]
    fn metadata_signature_binds_every_field() {
        let k = key(4);
        let mut meta = json!({"name": "a", "notebook": "n.ipynb", "bytes": 10, "sha256": "00"});
        let sig = sign_metadata(&k, &meta);
        meta["signature"] = Value::String(super::super::name::hex(&sig));
        assert!(verify_metadata(&k, &meta));
        assert!(!verify_metadata(&key(5), &meta));
        for (field, value) in [
            ("name", json!("b")),
            ("bytes", json!(11)),
            ("extra", json!(1)),
        ] {
            let mut t = meta.clone();
            t[field] = value;
            assert!(!verify_metadata(&k, &t), "{field}");
        }
        let mut t = meta.clone();
        t.as_object_mut().unwrap().remove("signature");
        assert!(!verify_metadata(&k, &t));
        t["signature"] = json!("zz");
        assert!(!verify_metadata(&k, &t));
    }
}
