//! Unit tests of `files.rs`: tamper detection on synthetic checkpoints, swapped metadata,
//! crash points of the atomic replace, delete and list.

use super::*;
use std::ffi::OsStr;

fn key(b: u8) -> SecretKey {
    SecretKey::from_env_value(OsStr::new(&hex(&[b; 32]))).unwrap()
}

fn unsigned(notebook: &str, name: &str) -> Unsigned {
    Unsigned {
        name: name.into(),
        notebook: notebook.into(),
        created_at: crate::store::now(),
        python_version: "3.11.7".into(),
        python_executable: "/usr/bin/python3".into(),
        packages: vec![Package {
            name: "numpy".into(),
            version: "2.4.6".into(),
        }],
        variables: vec![SavedVariable {
            name: "x".into(),
            type_name: "int".into(),
            bytes: 5,
            packages: vec![],
        }],
        skipped: vec![],
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    key: SecretKey,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("checkpoints");
        Fixture {
            _dir: dir,
            root,
            key: key(9),
        }
    }

    fn paths(&self, name: &str) -> CheckpointPaths {
        CheckpointPaths::new(&self.root, "nb.ipynb", name)
    }

    /// A synthetic data file, as a kernel would leave it, committed under `name`.
    fn save(&self, name: &str, content: &[u8]) -> Metadata {
        let p = self.paths(name);
        ensure_dir(&p.dir).unwrap();
        let temp = p.temp_data();
        fs::write(&temp, content).unwrap();
        commit(&p, &self.key, &temp, unsigned("nb.ipynb", name))
            .unwrap()
            .0
    }

    fn verify(&self, name: &str) -> Result<Option<Metadata>, CheckpointError> {
        verify(&self.paths(name), &self.key, "nb.ipynb", name)
    }
}

fn refused(r: Result<Option<Metadata>, CheckpointError>) -> String {
    match r {
        Err(e @ CheckpointError::Integrity { .. }) => e.to_string(),
        other => panic!("expected an integrity error, got {other:?}"),
    }
}

#[test]
fn round_trip_and_tamper_detection() {
    let f = Fixture::new();
    let content: Vec<u8> = (0..3 * sign::CHUNK + 17)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let meta = f.save("a", &content);
    assert_eq!(meta.bytes, content.len() as u64);
    assert_eq!(f.verify("a").unwrap().unwrap(), meta);
    assert!(f.verify("missing").unwrap().is_none());
    let data = f.paths("a").data(&meta.generation);
    let meta_path = f.paths("a").meta();
    let original = fs::read(&data).unwrap();
    let original_meta = fs::read(&meta_path).unwrap();

    // flip one byte anywhere in the data
    for pos in [0, content.len() / 2, content.len() - 1] {
        let mut t = original.clone();
        t[pos] ^= 0x80;
        fs::write(&data, &t).unwrap();
        refused(f.verify("a"));
    }
    // truncate, append
    fs::write(&data, &original[..original.len() - 1]).unwrap();
    assert!(refused(f.verify("a")).contains("truncated"));
    let mut longer = original.clone();
    longer.push(b'x');
    fs::write(&data, &longer).unwrap();
    refused(f.verify("a"));
    fs::write(&data, &original).unwrap();
    assert!(f.verify("a").unwrap().is_some());

    // flip a byte of the metadata (a digit of the size), or corrupt it
    let text = String::from_utf8(original_meta.clone()).unwrap();
    let t = text.replacen(
        "\"python_version\": \"3.11.7\"",
        "\"python_version\": \"3.11.8\"",
        1,
    );
    assert_ne!(t, text);
    fs::write(&meta_path, t).unwrap();
    assert!(refused(f.verify("a")).contains("signature"));
    fs::write(&meta_path, &original_meta[..original_meta.len() / 2]).unwrap();
    refused(f.verify("a"));
    fs::write(&meta_path, &original_meta).unwrap();

    // a data file renamed away
    fs::rename(&data, data.with_extension("moved")).unwrap();
    assert!(refused(f.verify("a")).contains("missing"));
    fs::rename(data.with_extension("moved"), &data).unwrap();

    // another key
    let other = verify(&f.paths("a"), &key(10), "nb.ipynb", "a");
    assert!(refused(other).contains("another key"));
    assert!(f.verify("a").unwrap().is_some());
}

#[test]
fn swapped_metadata_is_refused() {
    let f = Fixture::new();
    let a = f.save("a", b"AAAA");
    let b = f.save("b", b"BBBBBB");
    let (pa, pb) = (f.paths("a"), f.paths("b"));
    let (ma, mb) = (fs::read(pa.meta()).unwrap(), fs::read(pb.meta()).unwrap());
    // a's metadata in b's place (and the other way round)
    fs::write(pb.meta(), &ma).unwrap();
    fs::write(pa.meta(), &mb).unwrap();
    assert!(refused(f.verify("b")).contains("belongs to checkpoint 'a'"));
    refused(f.verify("a"));
    fs::write(pa.meta(), &ma).unwrap();
    fs::write(pb.meta(), &mb).unwrap();
    // a's data under b's data file name
    let (da, db) = (pa.data(&a.generation), pb.data(&b.generation));
    let saved_b = fs::read(&db).unwrap();
    fs::copy(&da, &db).unwrap();
    refused(f.verify("b"));
    fs::write(&db, saved_b).unwrap();
    assert!(f.verify("a").unwrap().is_some());
    assert!(f.verify("b").unwrap().is_some());
    // the metrics counter is bumped by the caller (checkpoint.rs), not here
}

#[test]
fn atomic_replace_leaves_old_or_new() {
    let f = Fixture::new();
    let p = f.paths("a");
    let old = f.save("a", b"old contents");

    // Crash after step 2 (new data placed, metadata not written): the old one verifies.
    let temp = p.temp_data();
    fs::write(&temp, b"new contents!").unwrap();
    let (generation, streamed, _) = place_data(&p, &f.key, &temp).unwrap();
    assert_eq!(f.verify("a").unwrap().unwrap(), old);

    // A crash in step 3 before the rename leaves a temp metadata file: still the old one.
    fs::write(p.dir.join(".tmp-crash.json"), b"{partial").unwrap();
    assert_eq!(f.verify("a").unwrap().unwrap(), old);

    // Step 3 done, crash before step 4: the new one verifies (old data still on disk).
    let new = write_metadata(&p, &f.key, &generation, streamed, unsigned("nb.ipynb", "a")).unwrap();
    assert!(p.data(&old.generation).exists());
    let got = f.verify("a").unwrap().unwrap();
    assert_eq!(got, new);
    assert_eq!(fs::read(p.data(&got.generation)).unwrap(), b"new contents!");

    // Step 4 removes the old generation only.
    remove_other_generations(&p, Some(&new.data_file));
    assert!(!p.data(&old.generation).exists());
    assert!(p.data(&new.generation).exists());
    assert!(f.verify("a").unwrap().is_some());

    // A full save again replaces it and leaves exactly one data file of this stem.
    f.save("a", b"third");
    let own: Vec<_> = fs::read_dir(&p.dir)
        .unwrap()
        .flatten()
        .filter(|e| p.is_own_data_file(e.file_name().to_str().unwrap()))
        .collect();
    assert_eq!(own.len(), 1);
}

#[test]
fn delete_and_list() {
    let f = Fixture::new();
    f.save("a", b"1");
    f.save("b", b"2");
    let dir = f.paths("a").dir;
    let listed = list_dir(&dir, Some(&f.key));
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|l| l.verified));
    assert!(list_dir(&dir, Some(&key(1))).iter().all(|l| !l.verified));
    assert!(delete(&f.paths("a")).unwrap());
    assert!(!delete(&f.paths("a")).unwrap());
    assert!(f.verify("a").unwrap().is_none());
    assert_eq!(list_dir(&dir, Some(&f.key)).len(), 1);
    // no data file of "a" left
    assert!(fs::read_dir(&dir).unwrap().flatten().all(|e| !f
        .paths("a")
        .is_own_data_file(e.file_name().to_str().unwrap())));
}
