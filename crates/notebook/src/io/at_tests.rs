//! Confinement and special-file tests for [`Location`] and the `*_at` functions.

use super::*;
use crate::io::{create_new_at, read_notebook_at, save_at, write_atomic_at};
use crate::Notebook;
use std::os::unix::fs::symlink;

fn nb(source: &str) -> Notebook {
    let mut nb = Notebook::new_empty();
    let cell = crate::Cell::new(crate::CellType::Code, source, nb.new_cell_id());
    nb.cells.push(cell);
    nb
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    canary: PathBuf,
    fd: Arc<OwnedFd>,
}

/// `<tmp>/root` (the root) and `<tmp>/canary/victim.ipynb` beside it.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let canary = dir.path().join("canary");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::create_dir_all(&canary).unwrap();
    std::fs::write(canary.join("victim.ipynb"), b"canary").unwrap();
    let fd = Arc::new(open_root(&root).unwrap());
    Fixture {
        _dir: dir,
        root,
        canary,
        fd,
    }
}

impl Fixture {
    fn loc(&self, rel: &str) -> Location {
        Location::beneath(self.fd.clone(), &self.root, rel)
    }
    fn canary_intact(&self) {
        assert_eq!(
            std::fs::read(self.canary.join("victim.ipynb")).unwrap(),
            b"canary"
        );
        assert_eq!(std::fs::read_dir(&self.canary).unwrap().count(), 1);
    }
}

#[test]
fn a_folder_swapped_for_an_outside_symlink_after_resolution_is_not_followed() {
    let f = fixture();
    let loc = f.loc("sub/victim.ipynb");
    create_new_at(&loc, &nb("1")).unwrap();
    let (loaded, stamp) = read_notebook_at(&loc).unwrap();
    // The swap happens between the calls, as a racing agent would do it.
    std::fs::rename(f.root.join("sub"), f.root.join("old")).unwrap();
    symlink(&f.canary, f.root.join("sub")).unwrap();
    let err = save_at(&loc, &loaded.notebook, &stamp, &nb("2")).unwrap_err();
    assert!(
        err.to_string().contains("outside the notebook root"),
        "{err}"
    );
    assert!(write_atomic_at(&loc, &nb("3")).is_err());
    assert!(create_new_at(&f.loc("sub/new.ipynb"), &nb("4")).is_err());
    assert!(read_notebook_at(&loc).is_err());
    f.canary_intact();
}

#[test]
fn a_file_swapped_for_an_outside_symlink_is_replaced_not_followed() {
    let f = fixture();
    let loc = f.loc("a.ipynb");
    create_new_at(&loc, &nb("1")).unwrap();
    std::fs::remove_file(f.root.join("a.ipynb")).unwrap();
    symlink(f.canary.join("victim.ipynb"), f.root.join("a.ipynb")).unwrap();
    assert!(
        read_notebook_at(&loc).is_err(),
        "reading through the link must fail"
    );
    write_atomic_at(&loc, &nb("2")).unwrap();
    f.canary_intact();
    let meta = std::fs::symlink_metadata(f.root.join("a.ipynb")).unwrap();
    assert!(meta.file_type().is_file(), "the link itself was replaced");
}

#[test]
fn symlinks_that_stay_beneath_the_root_are_followed() {
    let f = fixture();
    create_new_at(&f.loc("sub/x.ipynb"), &nb("1")).unwrap();
    symlink("sub", f.root.join("alias")).unwrap();
    let (loaded, _) = read_notebook_at(&f.loc("alias/x.ipynb")).unwrap();
    assert_eq!(loaded.notebook.cells.len(), 1);
}

#[test]
fn special_files_are_refused_without_blocking() {
    let f = fixture();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        f.root.join("fifo.ipynb"),
        FileType::Fifo,
        Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    std::fs::create_dir(f.root.join("adir.ipynb")).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(f.root.join("sock.ipynb")).unwrap();
    for (name, what) in [
        ("fifo.ipynb", "FIFO"),
        ("adir.ipynb", "folder"),
        ("sock.ipynb", "socket"),
    ] {
        let err = read_notebook_at(&f.loc(name)).unwrap_err();
        assert!(err.to_string().contains(what), "{name}: {err}");
        assert!(
            err.to_string().contains("not a regular file"),
            "{name}: {err}"
        );
    }
    // A device reached through a symlink: outside the root.
    symlink("/dev/zero", f.root.join("zero.ipynb")).unwrap();
    assert!(read_notebook_at(&f.loc("zero.ipynb")).is_err());
}

#[test]
fn parent_dirs_are_created_beneath_the_root_only() {
    let f = fixture();
    let loc = f.loc("a/b/c.ipynb");
    loc.create_parent_dirs().unwrap();
    create_new_at(&loc, &nb("1")).unwrap();
    symlink(&f.canary, f.root.join("out")).unwrap();
    assert!(f.loc("out/new/x.ipynb").create_parent_dirs().is_err());
    f.canary_intact();
}
