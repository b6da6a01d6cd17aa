"""`jupyter-mcp doctor` and the start-up pre-flight (SPEC §1, §9; issue 11 item 4 and "Bad
input"): one line per check, exit 1 on a fatal one; `serve` (stdio and HTTP) and `run` run the
same checks and refuse to start on a fatal one, naming the fix, with nothing saved lost:
a read-only or full data dir, a root that is a file, a port in use (the holder named), a
damaged state.db (left byte-identical), a kernelspec whose interpreter is gone, leftover
kernels of a previous run listed with their notebooks. Every process is stopped by its PID;
every mount is unmounted by its path.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import BINARY, full_env
from helpers import kill_pids, proc_start_time, wait_pids_gone, write_nb


def env_for(base: Path, data: Path, **extra: str) -> dict[str, str]:
    (base / "mpl").mkdir(exist_ok=True)
    env = full_env(data, base / "ipython", base / "mpl")
    env.update(extra)
    return env


def jmcp(base: Path, data: Path, *args: str, env: dict[str, str] | None = None,
         timeout: float = 60, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BINARY), *args], env=env or env_for(base, data), cwd=cwd or base,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def doctor(base: Path, root: Path, data: Path, *extra: str, env=None) -> subprocess.CompletedProcess:
    return jmcp(base, data, "doctor", "--root", str(root), "--data-dir", str(data), *extra, env=env)


def line(out: str, name: str) -> str:
    """The doctor line of check `name` ("ok   name: ..."), or an AssertionError."""
    for raw in out.splitlines():
        if raw[5:].startswith(name + ":"):
            return raw
    raise AssertionError(f"no '{name}' line in:\n{out}")


def digest(*paths: Path) -> dict[str, str | None]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None for p in paths}


@pytest.fixture
def mount(tmp_path: Path):
    """Mounts a tmpfs (options given) at a fresh folder; unmounted by its path afterwards.
    Needs root (CI runs as root); skipped where mounting is not allowed."""
    mounted: list[Path] = []

    def make(name: str, options: str) -> Path:
        where = tmp_path / name
        where.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounted.append(where)
        return where

    yield make
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_doctor_on_a_fresh_setup_passes_with_one_line_per_check(dirs):
    base, root, data = dirs
    r = doctor(base, root, data)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("data dir", "root", "disk space (data dir)", "state.db", "server.lock", "port"):
        assert line(r.stdout, name)
    assert "not created yet" in line(r.stdout, "state.db")
    assert not (data / "state.db").exists(), "doctor creates nothing but the data dir"
    py = line(r.stdout, "kernelspec python3")
    assert py.startswith("ok"), py
    # Which Python each kernelspec runs: the environment's interpreter, by absolute path.
    assert "/bin/python" in py, py
    assert [p.name for p in data.iterdir()] == [], "the probe file was removed"


def test_leftover_kernels_and_a_stale_lock_are_listed_with_their_notebooks(dirs):
    base, root, data = dirs
    marker = root / "kernel.pid"
    nb = root / "left.ipynb"
    write_nb(nb, [("code", f"import os, time\nopen({str(marker)!r}, 'w').write(f'{{os.getpid()}}\\n')\n"
                           "time.sleep(600)")])
    proc = subprocess.Popen([str(BINARY), "run", str(nb), "--root", str(root), "--data-dir", str(data)],
                            env=env_for(base, data), cwd=root, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    kernel: dict[int, int | None] = {}
    try:
        while not (marker.exists() and marker.read_text().endswith("\n")):
            assert proc.poll() is None, f"run exited early: {proc.stderr.read()}"
            wait_pids_gone({proc.pid: None}, 0.05)
        kpid = int(marker.read_text())
        kernel[kpid] = proc_start_time(kpid)
        proc.send_signal(signal.SIGKILL)  # the kernel lives on in its own process group
        proc.wait(timeout=30)
        r = doctor(base, root, data)
        assert r.returncode == 0, r.stdout + r.stderr
        left = line(r.stdout, "leftover kernels")
        assert "left.ipynb" in left and f"PID {kpid}" in left and "running" in left, left
        lock = line(r.stdout, "server.lock")
        assert "stale" in lock and str(proc.pid) in lock, lock
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        kill_pids(kernel)


def test_a_live_server_is_named_by_doctor(dirs):
    base, root, data = dirs
    proc = subprocess.Popen([str(BINARY), "serve", "--root", str(root), "--data-dir", str(data)],
                            env=env_for(base, data), cwd=base, stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lock = data / "server.lock"
        while not (lock.exists() and lock.read_text().strip() == str(proc.pid)):
            assert proc.poll() is None, "serve exited"
            wait_pids_gone({proc.pid: None}, 0.05)
        r = doctor(base, root, data)
        held = line(r.stdout, "server.lock")
        assert held.startswith("warn") and f"PID {proc.pid}" in held, held
        assert r.returncode == 0, r.stdout
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            kill_pids({proc.pid: None})


def test_a_damaged_state_db_refuses_start_and_is_left_untouched(dirs):
    base, root, data = dirs
    nb = root / "a.ipynb"
    write_nb(nb, [("code", "x = 1\nx")])
    r = jmcp(base, data, "run", str(nb), "--root", str(root), "--data-dir", str(data), "--timeout", "60",
             timeout=120)
    assert r.returncode == 0, r.stderr
    db = data / "state.db"
    with sqlite3.connect(db) as conn:  # move the WAL's pages into the file first
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    raw = bytearray(db.read_bytes())
    assert len(raw) > 8192
    # Keep the header and schema page; scribble over every b-tree page after it.
    raw[4096:] = bytes([0x5A]) * (len(raw) - 4096)
    db.write_bytes(bytes(raw))
    files = [db, data / "state.db-wal", data / "state.db-shm"]
    before = digest(*files)

    d = doctor(base, root, data)
    assert d.returncode == 1, d.stdout
    bad = line(d.stdout, "state.db")
    assert bad.startswith("FAIL") and "damaged" in bad and ".recover" in bad, bad
    for args in (["serve"], ["serve", "--transport", "http", "--bind", "127.0.0.1:0"]):
        s = jmcp(base, data, *args, "--root", str(root), "--data-dir", str(data))
        assert s.returncode != 0
        assert "state.db" in s.stderr and "damaged" in s.stderr and "nothing was changed" in s.stderr, s.stderr
    run = jmcp(base, data, "run", str(nb), "--root", str(root), "--data-dir", str(data))
    assert run.returncode != 0 and "damaged" in run.stderr, run.stderr
    assert digest(*files)[db.name] == before[db.name], "the damaged file was changed"
    assert not (data / "daemon.json").exists()


def test_a_read_only_data_dir_refuses_start(dirs, mount):
    base, root, data = dirs
    ro = mount("ro-data", "size=16m,mode=0755")
    (ro / "keep.txt").write_text("saved\n")
    subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
    d = doctor(base, root, ro)
    assert d.returncode == 1
    bad = line(d.stdout, "data dir")
    assert bad.startswith("FAIL") and "read-only" in bad, bad
    s = jmcp(base, ro, "serve", "--root", str(root), "--data-dir", str(ro))
    assert s.returncode != 0 and str(ro) in s.stderr and "read-only" in s.stderr, s.stderr
    assert (ro / "keep.txt").read_text() == "saved\n"


def test_a_full_data_dir_disk_refuses_start(dirs, mount):
    base, root, data = dirs
    small = mount("small-data", "size=8m")
    # Nearly full: about 1 MiB left, under the 4 MiB a server needs to start at all.
    (small / "filler").write_bytes(b"\0" * (7 * 1024 * 1024))
    d = doctor(base, root, small)
    assert d.returncode == 1
    bad = line(d.stdout, "disk space (data dir)")
    assert bad.startswith("FAIL") and "free space" in bad, bad
    s = jmcp(base, small, "serve", "--root", str(root), "--data-dir", str(small))
    assert s.returncode != 0 and "disk space" in s.stderr, s.stderr
    assert not (small / "state.db").exists()


def test_a_root_that_is_a_file_refuses_start(dirs):
    base, root, data = dirs
    not_dir = base / "notes.txt"
    not_dir.write_text("keep me\n")
    d = doctor(base, not_dir, data)
    assert d.returncode == 1
    bad = line(d.stdout, "root")
    assert bad.startswith("FAIL") and "Not a directory" in bad, bad
    s = jmcp(base, data, "serve", "--root", str(not_dir), "--data-dir", str(data))
    assert s.returncode != 0 and str(not_dir) in s.stderr and "--root" in s.stderr, s.stderr
    assert not_dir.read_text() == "keep me\n"


def test_a_port_in_use_is_refused_naming_its_holder(dirs):
    base, root, data = dirs
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        s = jmcp(base, data, "serve", "--transport", "http", "--bind", f"127.0.0.1:{port}",
                 "--root", str(root), "--data-dir", str(data))
        assert s.returncode != 0
        assert f"127.0.0.1:{port}" in s.stderr and f"PID {os.getpid()}" in s.stderr, s.stderr
        assert "--bind" in s.stderr, s.stderr
        assert not (data / "daemon.json").exists()
        d = doctor(base, root, data, "--bind", f"127.0.0.1:{port}")
        assert d.returncode == 1
        taken = line(d.stdout, "port")
        assert taken.startswith("FAIL") and f"PID {os.getpid()}" in taken and "python" in taken, taken
    finally:
        holder.close()


def test_a_kernelspec_whose_interpreter_is_gone_is_named_with_the_fix(dirs):
    base, root, data = dirs
    jp = base / "jupyter-path"
    spec = jp / "kernels" / "ghost"
    spec.mkdir(parents=True)
    gone = base / "deleted-venv" / "bin" / "python"
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(gone), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Ghost", "language": "python"}))
    env = env_for(base, data, JUPYTER_PATH=str(jp))
    d = doctor(base, root, data, env=env)
    ghost = line(d.stdout, "kernelspec ghost")
    assert ghost.startswith("warn") and str(gone) in ghost and "ipykernel install" in ghost, ghost
    assert d.returncode == 0, "the other kernelspecs still work: a warning, not a failure"
    # serve says so at start (and starts); run of a notebook on that kernelspec fails clearly.
    served = jmcp(base, data, "serve", "--root", str(root), "--data-dir", str(data), env=env)
    err = served.stderr  # stdin is closed at once: it warns, then ends (no initialize)
    assert "ghost" in err and str(gone) in err and "ipykernel install" in err, err
    nb = root / "g.ipynb"
    write_nb(nb, [("code", "1")])
    meta = json.loads(nb.read_text())
    meta["metadata"]["kernelspec"] = {"name": "ghost", "display_name": "Ghost", "language": "python"}
    nb.write_text(json.dumps(meta))
    saved = nb.read_text()
    r = jmcp(base, data, "run", str(nb), "--root", str(root), "--data-dir", str(data), env=env)
    assert r.returncode != 0 and str(gone) in r.stderr, r.stderr
    assert json.loads(nb.read_text())["cells"][0]["source"] == json.loads(saved)["cells"][0]["source"]
