"""A FUSE passthrough file system that can be frozen on command: a stale NFS mount, for real.

While frozen, every operation on the mount blocks inside the FUSE server, so the caller's
system call hangs in the kernel (state D: no signal, no ``timeout`` ends it) until the file
system is thawed -- exactly what a stale NFS mount behind a dropped VPN does (SPEC §8).

Run as a process of its own (``python fusefs.py SOURCE MOUNTPOINT``): it mounts SOURCE at
MOUNTPOINT (Debian ``fuse3``, PyPI ``mfusepy``, multithreaded, kernel attribute and entry
caching off so every call reaches us), prints ``mounted`` and then reads commands from stdin,
one per line: ``freeze``, ``thaw`` (answered ``frozen`` / ``thawed`` on stdout once in
effect). EOF on stdin thaws and unmounts. Blocked operations wait on a
``threading.Event``, not a poll.

From tests, use :class:`FuseMount` (a context manager): it always thaws and unmounts in its
teardown (``fusermount3 -u``, lazily with ``-z`` if the mount is busy), even when the test
failed. :func:`fuse_unavailable` says why a test must skip (no ``/dev/fuse``, no
``fusermount3``, no ``mfusepy``).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path


def fuse_unavailable() -> str | None:
    """Why a FUSE mount cannot be made here, or None when it can."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is absent: no FUSE in this environment (a stale mount cannot be simulated)"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (Debian package fuse3; scripts/setup.sh installs it)"
    try:
        import mfusepy  # noqa: F401
    except Exception as e:  # noqa: BLE001 - the import can fail on a missing libfuse too
        return f"mfusepy cannot be imported ({e}); run scripts/setup.sh"
    return None


class FuseMount:
    """A frozen-on-command passthrough mount of ``source`` at ``mountpoint`` (test side).

    ``with FuseMount(src, mnt) as fs: fs.freeze(); ...; fs.thaw()``. Teardown always thaws,
    unmounts and stops the FUSE process (by its own PID)."""

    def __init__(self, source: Path, mountpoint: Path):
        self.source = Path(source)
        self.mountpoint = Path(mountpoint)
        self.proc: subprocess.Popen | None = None
        self.frozen = False

    def __enter__(self) -> "FuseMount":
        self.source.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, __file__, str(self.source), str(self.mountpoint)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        try:
            self._expect("mounted", 20)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _expect(self, word: str, timeout: float) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        line = box[0].strip() if box else ""
        if line != word:
            err = ""
            if self.proc.poll() is not None and self.proc.stderr is not None:
                err = self.proc.stderr.read()[-2000:]
            raise RuntimeError(f"fusefs: expected {word!r}, got {line!r} {err}")

    def _command(self, cmd: str, answer: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        self._expect(answer, 10)

    def freeze(self) -> None:
        """Every operation on the mount blocks from now on, until :meth:`thaw`."""
        self._command("freeze", "frozen")
        self.frozen = True

    def thaw(self) -> None:
        """Blocked operations go on; new ones are served again."""
        self._command("thaw", "thawed")
        self.frozen = False

    def close(self) -> None:
        """Thaws, unmounts (lazily if busy) and stops the FUSE process. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None and proc.stdin is not None:
                proc.stdin.write("thaw\n")
                proc.stdin.flush()
        except OSError:
            pass
        unmount(self.mountpoint)
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            unmount(self.mountpoint)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def is_mounted(mountpoint: Path) -> bool:
    """True when ``mountpoint`` is in the mount table (no system call on the mount itself:
    ``realpath`` would hang on a frozen one, so the path must already be absolute and clean)."""
    target = os.path.abspath(str(mountpoint))
    with open("/proc/self/mounts", encoding="utf-8") as f:
        return any(len(line.split()) > 1 and line.split()[1] == target for line in f)


def unmount(mountpoint: Path) -> None:
    """``fusermount3 -u``, then ``-u -z`` (lazy) if the mount is busy; quiet when not mounted."""
    if not is_mounted(mountpoint):
        return
    r = subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True, text=True)
    if r.returncode != 0 and is_mounted(mountpoint):
        subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], capture_output=True, text=True)


# ---------------------------------------------------------------- the FUSE server side


def _serve(source: str, mountpoint: str) -> None:
    import mfusepy
    from mfusepy import FUSE, FuseOSError, Operations

    thawed = threading.Event()
    thawed.set()

    def gate() -> None:
        thawed.wait()

    def wrap(fn):
        def call(*args, **kwargs):
            gate()
            try:
                return fn(*args, **kwargs)
            except OSError as e:
                raise FuseOSError(e.errno or errno.EIO) from None

        return call

    root = os.path.realpath(source)

    def full(path: str) -> str:
        return os.path.join(root, path.lstrip("/"))

    class Passthrough(Operations):
        use_ns = True

        @wrap
        def access(self, path, amode):
            if not os.access(full(path), amode):
                raise FuseOSError(errno.EACCES)
            return 0

        @wrap
        def chmod(self, path, mode):
            return os.chmod(full(path), mode)

        @wrap
        def chown(self, path, uid, gid):
            return os.chown(full(path), uid, gid)

        @wrap
        def getattr(self, path, fh=None):
            st = os.lstat(full(path)) if fh is None else os.fstat(fh)
            keys = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_ino", "st_dev")
            out = {k: getattr(st, k) for k in keys}
            out.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
            return out

        @wrap
        def readdir(self, path, fh):
            return [".", ".."] + os.listdir(full(path))

        @wrap
        def readlink(self, path):
            return os.readlink(full(path))

        @wrap
        def mknod(self, path, mode, dev):
            return os.mknod(full(path), mode, dev)

        @wrap
        def rmdir(self, path):
            return os.rmdir(full(path))

        @wrap
        def mkdir(self, path, mode):
            return os.mkdir(full(path), mode)

        @wrap
        def statfs(self, path):
            sv = os.statvfs(full(path))
            keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree",
                    "f_files", "f_flag", "f_frsize", "f_namemax")
            return {k: getattr(sv, k) for k in keys}

        @wrap
        def unlink(self, path):
            return os.unlink(full(path))

        @wrap
        def symlink(self, name, target):
            return os.symlink(target, full(name))

        @wrap
        def rename(self, old, new):
            return os.rename(full(old), full(new))

        @wrap
        def link(self, target, name):
            return os.link(full(name), full(target))

        @wrap
        def utimens(self, path, times=None):
            if times is None:
                os.utime(full(path))
            else:
                os.utime(full(path), ns=times)
            return 0

        @wrap
        def open(self, path, flags):
            return os.open(full(path), flags)

        @wrap
        def create(self, path, mode, fi=None):
            return os.open(full(path), os.O_RDWR | os.O_CREAT, mode)

        @wrap
        def read(self, path, size, offset, fh):
            return os.pread(fh, size, offset)

        @wrap
        def write(self, path, data, offset, fh):
            return os.pwrite(fh, data, offset)

        @wrap
        def truncate(self, path, length, fh=None):
            if fh is not None:
                os.ftruncate(fh, length)
            else:
                os.truncate(full(path), length)
            return 0

        @wrap
        def flush(self, path, fh):
            return 0

        @wrap
        def release(self, path, fh):
            os.close(fh)
            return 0

        @wrap
        def fsync(self, path, datasync, fh):
            if datasync:
                os.fdatasync(fh)
            else:
                os.fsync(fh)
            return 0

        @wrap
        def fsyncdir(self, path, datasync, fh):
            return 0

    def control() -> None:
        # Commands from the test on stdin; EOF thaws (teardown unmounts).
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "freeze":
                thawed.clear()
                print("frozen", flush=True)
            elif cmd == "thaw":
                thawed.set()
                print("thawed", flush=True)
        thawed.set()

    def announce() -> None:
        # Tell the test once the mount is live (without touching it: realpath could hang).
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if is_mounted(Path(mountpoint)):
                print("mounted", flush=True)
                threading.Thread(target=control, daemon=True).start()
                return
            time.sleep(0.02)  # startup only: the mount appears in /proc/self/mounts
        print("mount did not appear", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    del mfusepy
    FUSE(
        Passthrough(),
        mountpoint,
        foreground=True,
        nothreads=False,
        attr_timeout=0,
        entry_timeout=0,
        negative_timeout=0,
        fsname="jmcp-fusefs",
    )


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2])
