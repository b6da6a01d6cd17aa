"""Faults and races (issue 8): a store that refuses writes, a worker that panics, a shutdown
racing the worker, a kernel that dies with the server during a run_all_cells batch, and an
adopted execution that must be cancellable. Races are made deterministic with the server's
test hooks (JUPYTER_MCP_TEST_HOOKS, src/engine/testhooks.rs: FIFOs the server blocks on) and
FIFOs the cells block on; nothing waits on a timer. Every test stops what it started, by PID.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import sqlite3
import subprocess
import time
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from mcp import ClientSession
from mcp.client.stdio import stdio_client

import chaos
from helpers import kill_pids, pids_mentioning, proc_start_time, wait_pids_gone


@asynccontextmanager
async def server(base: Path, root: Path, data: Path, *extra: str, hooks: Path | None = None):
    params = chaos.server_params(root, data, base, extra)
    if hooks is not None:
        params.env["JUPYTER_MCP_TEST_HOOKS"] = str(hooks)
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            yield s


async def ok(s: ClientSession, tool: str, **args):
    return await chaos.call(s, tool, **args)


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


async def read_fifo(path: Path) -> str:
    """Blocks (in a thread) until the other side opens `path` for writing and closes it."""
    return await asyncio.to_thread(lambda: path.read_text())


async def reached_within(path: Path, seconds: float) -> bool:
    """True when the server reaches the hook whose `.reached` FIFO is `path` within `seconds`.

    Opens the FIFO non-blocking so the test is never stuck; used to show that a point can NOT
    be reached while another task holds a lock (the fixed code), where the unfixed code gets
    there within milliseconds. A point reached late stays reachable with `read_fifo` after.
    """
    def poll() -> bool:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                try:
                    if os.read(fd, 64):
                        return True
                except BlockingIOError:
                    pass
                time.sleep(0.02)
            return False
        finally:
            os.close(fd)

    return await asyncio.to_thread(poll)


async def release_fifo(path: Path) -> None:
    """Opens `path` for writing and closes it: the reader blocked on it goes on."""
    await asyncio.to_thread(lambda: path.write_text("go"))


def wait_for_fifo_code(started: Path, then: str) -> str:
    """Cell code that signals `started` (blocking until the test reads it), then runs `then`."""
    return f"open({str(started)!r}, 'w').write('started')\n{then}"


def kernel_pid(kernels: dict) -> int:
    (k,) = [k for k in kernels["kernels"] if k.get("pid")]
    return k["pid"]


@pytest.fixture
def tmpfs_data(dirs):
    """(base, root, data) with data on a 48 MiB tmpfs (we run as root); unmounted afterwards."""
    base, root, data = dirs
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(data)], check=True)
    try:
        yield base, root, data
    finally:
        leftovers = pids_mentioning(data)
        if leftovers:
            kill_pids(leftovers)
        subprocess.run(["umount", str(data)], check=True)


def fill(path: Path) -> None:
    """Writes `path` until the file system is full."""
    chunk = b"\0" * (1 << 20)
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
    # Top up the last partial chunk.
    with open(path, "ab", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e


@pytest.mark.timeout(240)
def test_a_full_disk_ends_the_execution_in_memory_and_it_is_recorded_later(tmpfs_data):
    """Item 1: the store refuses the final write (SQLITE_FULL). The waiter still gets the
    terminal state with a note naming the store problem; once space is back, the row is
    recorded (not left `running`)."""
    base, root, data = tmpfs_data
    started, go = fifo(base / "started"), fifo(base / "go")

    async def body():
        async with server(base, root, data) as s:
            await ok(s, "create_notebook", notebook="f.ipynb")
            code = wait_for_fifo_code(started, f"open({str(go)!r}).read()\nprint('done')")
            sc = await ok(s, "execute_code", notebook="f.ipynb", code=code, timeout_s=0)
            eid = sc["execution_id"]
            await read_fifo(started)  # the cell runs: its row is `running`
            fill(data / "filler")
            await release_fifo(go)
            done = await ok(s, "get_execution", execution_id=eid, wait_s=60)
            assert done["status"] == "completed", done
            assert "could not record" in (done.get("kernel_note") or ""), done
            assert "disk full" in (done.get("kernel_note") or ""), done
            (data / "filler").unlink()
            # The next execution's worker records what is outstanding before it runs.
            nxt = await ok(s, "execute_code", notebook="f.ipynb", code="print(1)", timeout_s=60)
            assert nxt["status"] == "completed", nxt
            con = sqlite3.connect(data / "state.db")
            try:
                status, note = con.execute(
                    "SELECT status, note FROM executions WHERE id = ?", (eid,)).fetchone()
            finally:
                con.close()
            assert status == "completed", (status, note)
            assert "could not record" in note
            await ok(s, "shutdown_kernel", notebook="f.ipynb")

    asyncio.run(body())


@pytest.mark.timeout(180)
def test_a_panicking_worker_settles_its_execution_and_the_queue_goes_on(dirs):
    """Item 1: the worker panics while handling an execution; it is settled `failed` (in the
    store too, so it never runs after a restart) and the notebook keeps serving."""
    base, root, data = dirs
    hooks = base / "hooks"
    hooks.mkdir()

    async def body():
        async with server(base, root, data, hooks=hooks) as s:
            await ok(s, "create_notebook", notebook="p.ipynb")
            await ok(s, "execute_code", notebook="p.ipynb", code="x = 1", timeout_s=60)
            (hooks / "worker_job.panic").write_text("")
            sc = await ok(s, "execute_code", notebook="p.ipynb", code="x = 2", timeout_s=60)
            assert sc["status"] == "failed", sc
            assert "worker" in (sc.get("kernel_note") or ""), sc
            again = await ok(s, "execute_code", notebook="p.ipynb", code="print(x)", timeout_s=60)
            assert again["status"] == "completed", again
            assert chaos_stdout(again) == "1", again
            await ok(s, "shutdown_kernel", notebook="p.ipynb")
        con = sqlite3.connect(data / "state.db")
        try:
            (status,) = con.execute(
                "SELECT status FROM executions WHERE id = ?", (sc["execution_id"],)).fetchone()
        finally:
            con.close()
        assert status == "failed"

    asyncio.run(body())


def chaos_stdout(sc: dict) -> str:
    return "".join(o.get("text", "") for o in sc["outputs"] if o.get("name") == "stdout").strip()


@pytest.mark.timeout(180)
def test_shutdown_kernel_racing_the_worker_starts_no_fresh_kernel(dirs):
    """Item 4: shutdown_kernel stops the kernel while a cell runs and another is queued. The
    worker reaches the point where it would start a kernel for the queued one while shutdown
    is paused after stopping the kernel; the queued one must end `cancelled`, no kernel runs."""
    base, root, data = dirs
    hooks = base / "hooks"
    hooks.mkdir()
    started = fifo(base / "started")

    async def body():
        async with server(base, root, data, hooks=hooks) as s:
            await ok(s, "create_notebook", notebook="s.ipynb")
            a = await ok(s, "execute_code", notebook="s.ipynb",
                         code=wait_for_fifo_code(started, "import time\ntime.sleep(600)"), timeout_s=0)
            b = await ok(s, "execute_code", notebook="s.ipynb", code="print('B ran')", timeout_s=0)
            await read_fifo(started)
            shut_reached = fifo(hooks / "shutdown_stopped.reached")
            shut_resume = fifo(hooks / "shutdown_stopped.resume")
            worker_reached = fifo(hooks / "worker_before_kernel.reached")
            lock_taken = fifo(hooks / "kernel_lifecycle_taken.reached")
            shutdown = asyncio.create_task(ok(s, "shutdown_kernel", notebook="s.ipynb"))
            await read_fifo(shut_reached)      # shutdown stopped the kernel and is paused
            await read_fifo(worker_reached)    # the worker took B and wants a kernel
            # Shutdown has not cancelled B yet: the worker must not get the lifecycle lock
            # (to start a kernel for B) before it has. Unfixed, it gets it at once.
            assert not await reached_within(lock_taken, 3.0), \
                "the worker took the lifecycle lock while shutdown_kernel was between stop and cancel"
            for f in (shut_reached, worker_reached):
                f.unlink()
            await release_fifo(shut_resume)
            shut_resume.unlink()
            await shutdown
            await read_fifo(lock_taken)        # now it gets the lock, and finds B cancelled
            lock_taken.unlink()
            done_a = await ok(s, "get_execution", execution_id=a["execution_id"], wait_s=30)
            done_b = await ok(s, "get_execution", execution_id=b["execution_id"], wait_s=30)
            assert done_a["status"] == "interrupted", done_a
            assert done_b["status"] == "cancelled", done_b
            kernels = (await ok(s, "list_kernels"))["kernels"]
            assert [k for k in kernels if k.get("pid")] == [], kernels

    asyncio.run(body())


@pytest.mark.timeout(180)
def test_restart_kernel_racing_the_worker_runs_the_queue_on_the_restarted_kernel(dirs):
    """Item 4: while restart_kernel is paused between stopping the old kernel and starting the
    new one, the worker reaches for a kernel for the queued cell; it must not start its own:
    exactly one kernel afterwards, and the queued cell ran on it."""
    base, root, data = dirs
    hooks = base / "hooks"
    hooks.mkdir()
    started = fifo(base / "started")

    async def body():
        async with server(base, root, data, hooks=hooks) as s:
            await ok(s, "create_notebook", notebook="r.ipynb")
            a = await ok(s, "execute_code", notebook="r.ipynb",
                         code=wait_for_fifo_code(started, "import time\ntime.sleep(600)"), timeout_s=0)
            b = await ok(s, "execute_code", notebook="r.ipynb",
                         code="import os\nprint(os.getpid())", timeout_s=0)
            await read_fifo(started)
            reached = fifo(hooks / "restart_stopped.reached")
            resume = fifo(hooks / "restart_stopped.resume")
            worker_reached = fifo(hooks / "worker_before_kernel.reached")
            lock_taken = fifo(hooks / "kernel_lifecycle_taken.reached")
            restart = asyncio.create_task(ok(s, "restart_kernel", notebook="r.ipynb"))
            await read_fifo(reached)
            await read_fifo(worker_reached)
            # Between the old kernel's stop and the new one's start the worker must not get
            # the lifecycle lock (it would start a kernel of its own). Unfixed, it gets it at once.
            assert not await reached_within(lock_taken, 3.0), \
                "the worker took the lifecycle lock while restart_kernel was between stop and start"
            for f in (reached, worker_reached):
                f.unlink()
            await release_fifo(resume)
            resume.unlink()
            view = await restart
            await read_fifo(lock_taken)        # now it gets the lock, and finds the new kernel
            lock_taken.unlink()
            done_a = await ok(s, "get_execution", execution_id=a["execution_id"], wait_s=30)
            done_b = await ok(s, "get_execution", execution_id=b["execution_id"], wait_s=60)
            assert done_a["status"] == "interrupted", done_a
            assert done_b["status"] == "completed", done_b
            kernels = [k for k in (await ok(s, "list_kernels"))["kernels"] if k.get("pid")]
            assert len(kernels) == 1 and kernels[0]["pid"] == view["pid"], (kernels, view)
            await ok(s, "shutdown_kernel", notebook="r.ipynb")
        # Only the restarted kernel ever served this data dir after the restart.
        con = sqlite3.connect(data / "state.db")
        try:
            n = con.execute("SELECT COUNT(*) FROM kernel_sessions").fetchone()[0]
        finally:
            con.close()
        assert n == 2, f"{n} kernels were started (the worker started its own)"

    asyncio.run(body())


@pytest.mark.timeout(180)
def test_recovery_cancels_the_rest_of_a_batch_whose_kernel_died_with_the_server(dirs):
    """Item 3: run_all_cells is in its first cell when server and kernel are killed together.
    After the restart the first cell is `interrupted` and the rest of the batch `cancelled`
    (not run on a fresh kernel)."""
    base, root, data = dirs
    started = fifo(base / "started")
    marker = base / "rest-ran"

    async def body():
        async with server(base, root, data) as s:
            await ok(s, "create_notebook", notebook="b.ipynb", cells=[
                {"source": wait_for_fifo_code(started, "import time\ntime.sleep(600)")},
                {"source": f"open({str(marker)!r}, 'w').write('ran')"},
                {"source": "print('third')"},
            ])
            batch = await ok(s, "run_all_cells", notebook="b.ipynb", timeout_s=0)
            ids = [e["execution_id"] for e in batch["executions"]]
            await read_fifo(started)
            pid = kernel_pid(await ok(s, "list_kernels"))
            start = proc_start_time(pid)
            for spid in chaos.server_pids(data):
                os.kill(spid, signal.SIGKILL)
            os.killpg(pid, signal.SIGKILL)
            assert not wait_pids_gone({pid: start}, 10), "the kernel is gone"
        async with server(base, root, data) as s:
            first = await ok(s, "get_execution", execution_id=ids[0], wait_s=30)
            assert first["status"] == "interrupted", first
            for eid in ids[1:]:
                rest = await ok(s, "get_execution", execution_id=eid, wait_s=30)
                assert rest["status"] == "cancelled", rest
            kernels = [k for k in (await ok(s, "list_kernels"))["kernels"] if k.get("pid")]
            for k in kernels:
                await ok(s, "shutdown_kernel", notebook=k["notebook"])
        assert not marker.exists(), "a later cell of the stopped batch ran"
        chaos.validate_file(root / "b.ipynb")

    asyncio.run(body())


@pytest.mark.timeout(180)
def test_an_adopted_execution_can_be_cancelled(dirs):
    """Item 6: after a kill -9 of the server, a cell still running on the surviving kernel is
    adopted; cancel_execution interrupts it (it used to do nothing) and the queue goes on."""
    base, root, data = dirs
    started = fifo(base / "started")

    async def body():
        async with server(base, root, data) as s:
            await ok(s, "create_notebook", notebook="a.ipynb")
            sc = await ok(s, "execute_code", notebook="a.ipynb",
                          code=wait_for_fifo_code(started, "import time\ntime.sleep(600)"), timeout_s=0)
            eid = sc["execution_id"]
            await read_fifo(started)
            for spid in chaos.server_pids(data):
                os.kill(spid, signal.SIGKILL)
        async with server(base, root, data) as s:
            view = await ok(s, "get_execution", execution_id=eid, wait_s=0)
            assert view["status"] == "running", view
            done = await ok(s, "cancel_execution", execution_id=eid)
            assert done["status"] == "interrupted", done
            nxt = await ok(s, "execute_code", notebook="a.ipynb", code="print('next')", timeout_s=60)
            assert nxt["status"] == "completed", nxt
            await ok(s, "shutdown_kernel", notebook="a.ipynb")

    asyncio.run(body())


@pytest.mark.timeout(180)
def test_max_cell_seconds_applies_to_an_adopted_execution(dirs):
    """Item 6: --max-cell-seconds bounds an adopted cell too (counted from its first start)."""
    base, root, data = dirs
    started = fifo(base / "started")

    async def body():
        async with server(base, root, data) as s:
            await ok(s, "create_notebook", notebook="m.ipynb")
            sc = await ok(s, "execute_code", notebook="m.ipynb",
                          code=wait_for_fifo_code(started, "import time\ntime.sleep(600)"), timeout_s=0)
            eid = sc["execution_id"]
            await read_fifo(started)
            for spid in chaos.server_pids(data):
                os.kill(spid, signal.SIGKILL)
        async with server(base, root, data, "--max-cell-seconds", "3") as s:
            done = await ok(s, "get_execution", execution_id=eid, wait_s=60)
            assert done["status"] == "interrupted", done
            assert "--max-cell-seconds" in (done.get("kernel_note") or ""), done
            await ok(s, "shutdown_kernel", notebook="m.ipynb")

    asyncio.run(body())


@pytest.mark.timeout(180)
def test_a_batch_whose_failure_was_recorded_but_not_its_cancel_does_not_resume(dirs):
    """Item 3 (found by the chaos batch rounds): the process ends between recording a batch
    cell as failed and cancelling the rest of the batch (two commits). Simulated by a kill -9
    while the first cell runs and the row then set to `failed` as the first commit would have.
    After the restart the rest of the batch is cancelled, not run."""
    base, root, data = dirs
    started = fifo(base / "started")
    marker = base / "rest-ran"

    async def body():
        async with server(base, root, data) as s:
            await ok(s, "create_notebook", notebook="b.ipynb", cells=[
                {"source": wait_for_fifo_code(started, "import time\ntime.sleep(600)")},
                {"source": f"open({str(marker)!r}, 'w').write('ran')"},
            ])
            batch = await ok(s, "run_all_cells", notebook="b.ipynb", timeout_s=0)
            ids = [e["execution_id"] for e in batch["executions"]]
            await read_fifo(started)
            for spid in chaos.server_pids(data):
                os.kill(spid, signal.SIGKILL)
        con = sqlite3.connect(data / "state.db")
        con.execute("UPDATE executions SET status = 'failed', finished_at = created_at WHERE id = ?",
                    (ids[0],))
        con.commit()
        con.close()
        async with server(base, root, data) as s:
            rest = await ok(s, "get_execution", execution_id=ids[1], wait_s=30)
            assert rest["status"] == "cancelled", rest
            await ok(s, "shutdown_kernel", notebook="b.ipynb")
        assert not marker.exists(), "the rest of the stopped batch ran"

    asyncio.run(body())
