"""`jupyter-mcp run` as a good citizen (issue 8 items 5 and 8): it holds the data dir's server
lock, stops its kernel on SIGTERM and records its executions as ended, makes input() fail at
once as nbclient does, honours --offload-outputs-over, and refuses bad durations with a usage
error. Every process is stopped by its own PID.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import BINARY, full_env
from helpers import kill_pids, pid_alive, proc_start_time, read_nb, stream_text, wait_pids_gone, write_nb


def env_for(base: Path, data: Path) -> dict[str, str]:
    (base / "mpl").mkdir(exist_ok=True)
    return full_env(data, base / "ipython", base / "mpl")


def run_cmd(base: Path, root: Path, data: Path, nb: Path, *extra: str) -> list[str]:
    return [str(BINARY), "run", str(nb), "--root", str(root), "--data-dir", str(data), *extra]


def serve_cmd(root: Path, data: Path) -> list[str]:
    return [str(BINARY), "serve", "--root", str(root), "--data-dir", str(data)]


def wait_for_file(path: Path, proc: subprocess.Popen, what: str) -> str:
    """Waits (bounded by the test timeout) until `path` holds a line, or fails if `proc` ended."""
    import time

    while True:
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text().strip()
        if proc.poll() is not None:
            raise AssertionError(f"run exited ({proc.returncode}) before {what}: {proc.stderr.read()}")
        time.sleep(0.05)


@pytest.mark.timeout(240)
def test_run_holds_the_lock_and_sigterm_stops_its_kernel(dirs):
    base, root, data = dirs
    # In the notebook folder: kernels cannot create entries right in an ancestor of the data
    # dir (Landlock, README "Safety").
    marker = root / "kernel.pid"
    nb = root / "long.ipynb"
    write_nb(nb, [
        ("code", f"import os, time\nopen({str(marker)!r}, 'w').write(f'{{os.getpid()}}\\n')\ntime.sleep(600)"),
        ("code", "print('never')"),
    ])
    proc = subprocess.Popen(run_cmd(base, root, data, nb), env=env_for(base, data), cwd=root,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    run_pid = {proc.pid: proc_start_time(proc.pid)}
    kernel: dict[int, int | None] = {}
    try:
        kpid = int(wait_for_file(marker, proc, "the first cell ran"))
        kernel = {kpid: proc_start_time(kpid)}
        assert pid_alive(kpid)

        # A server on the same data dir while the run holds it: refused, naming the holder.
        serve = subprocess.run(serve_cmd(root, data), env=env_for(base, data), cwd=root,
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        assert serve.returncode != 0, serve
        assert f"PID {proc.pid}" in serve.stderr, serve.stderr

        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, err)
        assert "SIGTERM" in err, err
        assert not wait_pids_gone(kernel, 10.0), f"kernel {kpid} outlived the run"

        db = sqlite3.connect(data / "state.db")
        rows = dict(db.execute("SELECT code, status FROM executions").fetchall())
        db.close()
        statuses = sorted(rows.values())
        assert statuses == ["cancelled", "interrupted"], rows
    finally:
        kill_pids({**run_pid, **kernel})


@pytest.mark.timeout(180)
def test_serve_holding_the_data_dir_refuses_a_run(dirs):
    base, root, data = dirs
    nb = root / "a.ipynb"
    write_nb(nb, [("code", "1+1")])
    server = subprocess.Popen(serve_cmd(root, data), env=env_for(base, data), cwd=root,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pids = {server.pid: proc_start_time(server.pid)}
    try:
        lock = data / "server.lock"
        import time

        while not (lock.exists() and lock.read_text().strip() == str(server.pid)):
            assert server.poll() is None, "the server exited"
            time.sleep(0.05)
        r = subprocess.run(run_cmd(base, root, data, nb), env=env_for(base, data), cwd=root,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r
        assert f"PID {server.pid}" in r.stderr, r.stderr
        assert "Out[" not in read_nb(nb).cells[0].get("outputs", []).__repr__()
        assert not read_nb(nb).cells[0].outputs, "nothing ran"
    finally:
        if server.stdin:
            server.stdin.close()
        kill_pids(pids)


@pytest.mark.timeout(180)
def test_run_input_fails_at_once_and_offloads_big_outputs(dirs):
    base, root, data = dirs
    nb = root / "io.ipynb"
    write_nb(nb, [
        ("code", "print('x' * 200_000)"),
        ("code", "name = input('who? ')"),
        ("code", "print('after')"),
    ])
    r = subprocess.run(run_cmd(base, root, data, nb, "--offload-outputs-over", "10000"),
                       env=env_for(base, data), cwd=root, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=150)
    assert r.returncode == 1, r
    assert "StdinNotImplementedError" in r.stderr, r.stderr
    cells = read_nb(nb).cells
    big = stream_text(cells[0].outputs)
    assert 0 < len(big) < 50_000, "the big output is offloaded, not written whole"
    assert "asset" in big.lower(), big[:3000]
    assert not cells[2].outputs, "the batch stopped at the input() error"


@pytest.mark.parametrize("flag,value", [
    ("--timeout", "NaN"),
    ("--timeout", "-1"),
    ("--max-cell-seconds", "1e300"),
    ("--input-timeout", "inf"),
    ("--kernel-start-timeout", "0"),
])
def test_bad_durations_are_usage_errors(dirs, flag, value):
    base, root, data = dirs
    nb = root / "d.ipynb"
    write_nb(nb, [("code", "1")])
    r = subprocess.run(run_cmd(base, root, data, nb, f"{flag}={value}"), env=env_for(base, data),
                       cwd=root, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r
    assert "panicked" not in r.stderr, r.stderr
    assert flag in r.stderr and ("out of range" in r.stderr or "not a number" in r.stderr), r.stderr


def test_bad_duration_for_serve_is_a_usage_error(dirs):
    base, root, data = dirs
    r = subprocess.run(serve_cmd(root, data) + ["--max-cell-seconds=-5"], env=env_for(base, data),
                       cwd=root, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "out of range" in r.stderr, r
