"""SPEC §8 with a real stale mount: the data dir or the notebook root sits on a FUSE
passthrough (tests/e2e/fusefs.py) that is frozen mid-test, so every system call on it hangs
in the kernel exactly as on a stale NFS mount behind a dropped VPN.

While frozen: calls that need the frozen storage fail as tool errors naming the path and what
to do; calls that need none (list_kernels, get_execution of a running execution,
server_status, interrupt_kernel) answer; an execution that finishes meanwhile keeps its
outputs in memory. After thawing, without a restart: the breaker closes by itself, calls work
again, the outputs held in memory reach state.db and the notebook, and `PRAGMA
integrity_check` is ok.

Servers run with --storage-timeout 1 --storage-probe-interval 0.2 so a test takes seconds.
Every test thaws in a `finally` before its server shuts down (a process with a thread stuck
in state D cannot exit), and FuseMount's teardown always thaws and unmounts.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import anyio
import pytest

from fusefs import FuseMount, fuse_unavailable
from helpers import read_nb, write_nb

pytestmark = pytest.mark.skipif(fuse_unavailable() is not None, reason=str(fuse_unavailable()))

FAST = ["--storage-timeout", "1", "--storage-probe-interval", "0.2"]
# A frozen call must come back as a tool error, never hang: this is a hang guard, far above
# the 1 s storage timeout (the figures are in bench/bench_storage.py).
HANG_GUARD_S = 20


async def storage_state(client) -> str:
    sc = await client.ok("server_status", read_timeout=HANG_GUARD_S)
    return sc["storage"]


async def wait_storage(client, ok: bool, timeout: float = 30.0) -> str:
    """Polls server_status until storage is (not) "ok"; returns the state."""
    deadline = time.monotonic() + timeout
    while True:
        state = await storage_state(client)
        if (state == "ok") == ok:
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"storage state still {state!r} after {timeout}s")
        await anyio.sleep(0.1)


def integrity(db: Path) -> str:
    con = sqlite3.connect(str(db))
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def stored_status(db: Path, execution_id: str) -> tuple[str, str]:
    con = sqlite3.connect(str(db))
    try:
        row = con.execute("SELECT status, outputs FROM executions WHERE id = ?", (execution_id,)).fetchone()
        return row[0], row[1]
    finally:
        con.close()


def test_data_dir_frozen_fails_fast_keeps_outputs_and_recovers(mcp, tmp_path):
    with FuseMount(tmp_path / "data-src", tmp_path / "data-mnt") as fs:
        mcp.data = tmp_path / "data-mnt" / "data"
        mcp.extra_args = FAST
        write_nb(mcp.root / "n.ipynb", [("code", "x = 41"), ("code", "import time; time.sleep(2); print('finished', x + 1)")])

        async def body(client):
            ids = [c["id"] for c in (await client.ok("read_notebook", notebook="n.ipynb"))["cells"]]
            first = await client.ok("execute_cell", notebook="n.ipynb", cell_id=ids[0])
            assert first["status"] == "completed"
            slow = await client.ok("execute_cell", notebook="n.ipynb", cell_id=ids[1], timeout_s=0)
            assert slow["status"] in ("pending", "running")
            eid = slow["execution_id"]
            fs.freeze()
            try:
                state = await wait_storage(client, ok=False)
                assert "data dir" in state and str(mcp.data) in state, state
                # Needs storage: a tool error naming the path and what to do.
                with anyio.fail_after(HANG_GUARD_S):
                    msg = await client.err("execute_code", notebook="n.ipynb", code="1")
                assert str(mcp.data) in msg, msg
                assert "nothing accepted was lost" in msg and "retry" in msg, msg
                with anyio.fail_after(HANG_GUARD_S):
                    msg = await client.err("save_environment", notebook="n.ipynb", name="frozen")
                assert "not answering" in msg, msg
                # Needs none: answers.
                with anyio.fail_after(HANG_GUARD_S):
                    kernels = await client.ok("list_kernels")
                assert [k["notebook"] for k in kernels["kernels"]] == ["n.ipynb"]
                # The slow cell ends while the data dir is frozen: its result comes from memory.
                with anyio.fail_after(HANG_GUARD_S):
                    done = await client.ok("get_execution", execution_id=eid, wait_s=10)
                assert done["status"] == "completed", done
                assert "finished 42" in str(done["outputs"]), done
            finally:
                fs.thaw()
            await wait_storage(client, ok=True)
            # Recovered without a restart: new work is accepted, checkpoints save.
            again = await client.ok("execute_code", notebook="n.ipynb", code="print(x)")
            assert again["status"] == "completed" and "41" in str(again["outputs"])
            saved = await client.ok("save_environment", notebook="n.ipynb", name="after")
            assert "x" in str(saved)
            return eid

        eid = mcp.run(body)
        db = mcp.data / "state.db"
        status, outputs = stored_status(db, eid)
        assert status == "completed" and "finished 42" in outputs, (status, outputs)
        assert integrity(db) == "ok"
        assert "finished 42" in str(read_nb(mcp.root / "n.ipynb").cells[1].outputs)


def test_root_frozen_fails_fast_then_writes_held_outputs(mcp, tmp_path):
    with FuseMount(tmp_path / "root-src", tmp_path / "root-mnt") as fs:
        mcp.root = tmp_path / "root-mnt"
        mcp.extra_args = FAST
        write_nb(mcp.root / "n.ipynb", [("code", "import time; time.sleep(2); print('held', 7)")])

        async def body(client):
            cell = (await client.ok("read_notebook", notebook="n.ipynb"))["cells"][0]["id"]
            # The kernel is up before the freeze (a kernel starting in a frozen folder hangs in
            # its own imports until --kernel-start-timeout; that is not what this test shows).
            await client.ok("execute_code", notebook="n.ipynb", code="import time")
            run = await client.ok("execute_cell", notebook="n.ipynb", cell_id=cell, timeout_s=0)
            eid = run["execution_id"]
            fs.freeze()
            try:
                state = await wait_storage(client, ok=False)
                assert "notebook root" in state, state
                with anyio.fail_after(HANG_GUARD_S):
                    msg = await client.err("read_notebook", notebook="n.ipynb")
                assert str(mcp.root) in msg and "nothing accepted was lost" in msg, msg
                with anyio.fail_after(HANG_GUARD_S):
                    msg = await client.err("insert_cell", notebook="n.ipynb", source="2")
                assert "not answering" in msg, msg
                with anyio.fail_after(HANG_GUARD_S):
                    done = await client.ok("get_execution", execution_id=eid, wait_s=10)
                assert done["status"] == "completed" and "held 7" in str(done["outputs"]), done
                with anyio.fail_after(HANG_GUARD_S):
                    await client.ok("interrupt_kernel", notebook="n.ipynb")
                    await client.ok("list_kernels")
            finally:
                fs.thaw()
            await wait_storage(client, ok=True)
            # The outputs held in memory reach the file once the root answers.
            deadline = time.monotonic() + 20
            while "held 7" not in str((await client.ok("read_notebook", notebook="n.ipynb", outputs="full"))["cells"][0]):
                assert time.monotonic() < deadline, "held outputs never reached the notebook"
                await anyio.sleep(0.2)
            return eid

        eid = mcp.run(body)
        assert "held 7" in str(read_nb(mcp.root / "n.ipynb").cells[0].outputs)
        assert stored_status(mcp.data / "state.db", eid)[0] == "completed"
        assert integrity(mcp.data / "state.db") == "ok"


def test_a_frozen_folder_inside_the_root_does_not_stop_the_other_notebook(mcp, tmp_path):
    remote = mcp.root / "remote"
    with FuseMount(tmp_path / "remote-src", remote) as fs:
        mcp.extra_args = FAST
        write_nb(mcp.root / "local.ipynb", [("code", "n = 0")])
        write_nb(remote / "far.ipynb", [("code", "y = 1")])

        async def body(client):
            await client.ok("execute_code", notebook="remote/far.ipynb", code="y = 1")
            await client.ok("execute_code", notebook="local.ipynb", code="n = 0")
            fs.freeze()
            try:
                # The far notebook fails within the storage timeout (no breaker: the root
                # itself answers), repeatedly, without piling up stuck threads.
                for _ in range(3):
                    with anyio.fail_after(HANG_GUARD_S):
                        msg = await client.err("read_notebook", notebook="remote/far.ipynb")
                    assert "remote" in msg and "not answering" in msg, msg
                # The local notebook keeps executing and saving, many times over.
                for i in range(5):
                    with anyio.fail_after(HANG_GUARD_S):
                        r = await client.ok("execute_code", notebook="local.ipynb", code=f"n += 1; print('local', n)")
                    assert r["status"] == "completed" and f"local {i + 1}" in str(r["outputs"]), r
                    with anyio.fail_after(HANG_GUARD_S):
                        await client.ok("insert_cell", notebook="local.ipynb", source=f"# {i}")
                assert await storage_state(client) == "ok"
            finally:
                fs.thaw()
            # Thawed: the far notebook answers again, no restart.
            deadline = time.monotonic() + 20
            while True:
                sc, res = await client.call("read_notebook", notebook="remote/far.ipynb")
                if not res.is_error:
                    break
                assert time.monotonic() < deadline, "the thawed folder never answered again"
                await anyio.sleep(0.2)
            r = await client.ok("execute_code", notebook="remote/far.ipynb", code="print(y + 1)")
            assert "2" in str(r["outputs"])

        mcp.run(body)
        assert len(read_nb(mcp.root / "local.ipynb").cells) == 6
        assert integrity(mcp.data / "state.db") == "ok"


SLOW_PICKLE = """
import time
class Slow:
    def __getstate__(self):
        time.sleep(3)
        return {}
first = bytes(2_000_000)
slow = Slow()
small = 7
"""


def test_freeze_during_a_checkpoint_save_leaves_no_partial_checkpoint(mcp, tmp_path):
    src = tmp_path / "data-src"
    with FuseMount(src, tmp_path / "data-mnt") as fs:
        mcp.data = tmp_path / "data-mnt" / "data"
        mcp.extra_args = FAST
        write_nb(mcp.root / "n.ipynb", [("code", "small = 7")])

        async def body(client):
            await client.ok("execute_code", notebook="n.ipynb", code=SLOW_PICKLE)
            box: dict = {}

            async def save():
                with anyio.fail_after(HANG_GUARD_S):
                    box["sc"], box["res"] = await client.call(
                        "save_environment", notebook="n.ipynb", name="frozen", variables=["first", "slow"]
                    )

            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(save)
                    # The kernel is writing the data file (seen through the FUSE source, which
                    # never hangs) and then pickles `slow` for 3 s: freeze the data dir now.
                    deadline = time.monotonic() + HANG_GUARD_S
                    while not list((src / "data" / "checkpoints").rglob(".tmp-*.dill")):
                        assert time.monotonic() < deadline, "the checkpoint save never started writing"
                        await anyio.sleep(0.02)
                    fs.freeze()
                res = box["res"]
                assert res.is_error, box["sc"]
                msg = res.content[0].text
                assert "not answering" in msg and str(mcp.data) in msg, msg
                # Needs none: answers while the data dir is frozen.
                with anyio.fail_after(HANG_GUARD_S):
                    await client.ok("list_kernels")
            finally:
                fs.thaw()
            await wait_storage(client, ok=True)
            # Recovered without a restart: the kernel answers, a new save and a load work, and
            # the interrupted save left no checkpoint behind.
            with anyio.fail_after(HANG_GUARD_S * 2):
                await client.ok("save_environment", notebook="n.ipynb", name="after", variables=["small"])
            names = [c["name"] for c in (await client.ok("list_checkpoints", notebook="n.ipynb"))["checkpoints"]]
            assert names == ["after"], names
            await client.ok("execute_code", notebook="n.ipynb", code="del small")
            await client.ok("load_environment", notebook="n.ipynb", name="after")
            r = await client.ok("execute_code", notebook="n.ipynb", code="print(small)")
            assert "7" in str(r["outputs"]), r

        mcp.run(body)
        assert integrity(mcp.data / "state.db") == "ok"


def _mount_tmpfs(where: Path, size: str) -> str | None:
    """Mounts a small tmpfs at `where`; returns why not (not root, no mount) or None."""
    import os
    import subprocess

    if os.geteuid() != 0:
        return "mounting a small tmpfs needs root"
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                       capture_output=True, text=True)
    return None if r.returncode == 0 else f"cannot mount a tmpfs here: {r.stderr.strip()}"


def _remount(where: Path, mode: str) -> bool:
    """Remounts `where` with `mode`; False when the kernel refuses (busy: files open for writing)."""
    import subprocess

    return subprocess.run(["mount", "-o", f"remount,{mode}", str(where)], capture_output=True).returncode == 0


def test_data_dir_read_only_or_full_at_a_call_is_a_clear_error_and_loses_nothing(mcp, tmp_path):
    import subprocess

    disk = tmp_path / "small-disk"
    why = _mount_tmpfs(disk, "64m")
    if why:
        pytest.skip(why)
    try:
        mcp.data = disk / "data"
        mcp.extra_args = FAST
        write_nb(mcp.root / "n.ipynb", [("code", "v = 5")])

        async def body(client):
            first = await client.ok("execute_code", notebook="n.ipynb", code="v = 5")
            # Read-only data dir: the probe's write fails, the breaker opens, calls say why.
            # (Linux refuses to remount a file system read-only while files are open for
            # writing on it, as the kernel's log is: then only the full disk is shown.)
            if _remount(disk, "ro"):
                try:
                    state = await wait_storage(client, ok=False)
                    assert "Read-only file system" in state, state
                    msg = await client.err("execute_code", notebook="n.ipynb", code="v")
                    assert str(mcp.data) in msg and "Read-only file system" in msg, msg
                finally:
                    assert _remount(disk, "rw")
                await wait_storage(client, ok=True)
            # Full disk: the same, with the disk's own words.
            filler = disk / "filler"
            subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M", "count=80"], capture_output=True)
            try:
                state = await wait_storage(client, ok=False)
                assert "No space left on device" in state, state
                msg = await client.err("execute_code", notebook="n.ipynb", code="v")
                assert "No space left on device" in msg and "nothing accepted was lost" in msg, msg
            finally:
                filler.unlink()
            await wait_storage(client, ok=True)
            again = await client.ok("execute_code", notebook="n.ipynb", code="print(v)")
            assert "5" in str(again["outputs"])
            return first["execution_id"]

        eid = mcp.run(body)
        assert stored_status(mcp.data / "state.db", eid)[0] == "completed"
        assert integrity(mcp.data / "state.db") == "ok"
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
