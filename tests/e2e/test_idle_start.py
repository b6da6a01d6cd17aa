"""Issue 8 item 12: when a notebook's queue is idle and its kernel is live, an execution is
accepted and started in ONE fsync'd commit (its row is `running`, with the kernel session and
the execute_request's msg_id, from the moment it is acknowledged), not `pending` and then
marked `running` by a second commit. Shown with the server's test hooks (the worker is held
before it touches the kernel), and the races that come with it: an execution accepted as
started whose kernel is shut down, or which is cancelled, before it is sent is not run and
gets no kernel of its own. Every test stops what it started, by PID.
"""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from test_faults import fifo, ok, read_fifo, release_fifo, server


def row(data, eid: str) -> dict:
    con = sqlite3.connect(data / "state.db")
    con.row_factory = sqlite3.Row
    try:
        r = con.execute(
            "SELECT status, kernel_session, msg_id, created_at, started_at FROM executions "
            "WHERE id = ?", (eid,)).fetchone()
        return dict(r)
    finally:
        con.close()


async def held_submission(s, hooks, notebook: str, code: str):
    """Submits `code` on a warm, idle kernel with the worker held at `worker_before_kernel`;
    returns (execution id, resume FIFO)."""
    await ok(s, "create_notebook", notebook=notebook)
    warm = await ok(s, "execute_code", notebook=notebook, code="1")
    assert warm["status"] == "completed", warm
    reached = fifo(hooks / "worker_before_kernel.reached")
    resume = fifo(hooks / "worker_before_kernel.resume")
    eid = (await ok(s, "execute_code", notebook=notebook, code=code, timeout_s=0))["execution_id"]
    await read_fifo(reached)        # the worker has the job and has not touched the kernel
    reached.unlink()
    return eid, resume


@pytest.mark.timeout(120)
def test_idle_queue_accepts_and_starts_in_one_commit(dirs):
    base, root, data = dirs
    hooks = base / "hooks"
    hooks.mkdir()

    async def body():
        async with server(base, root, data, hooks=hooks) as s:
            eid, resume = await held_submission(s, hooks, "one.ipynb", "40 + 2")
            r = row(data, eid)
            # The acknowledged row already says where and as what it is sent: no second
            # commit is needed to start it.
            assert r["status"] == "running", r
            assert r["kernel_session"] and r["msg_id"], r
            assert r["started_at"] == r["created_at"], r
            await release_fifo(resume)
            resume.unlink()
            done = await ok(s, "get_execution", execution_id=eid, wait_s=30)
            assert done["status"] == "completed", done
            assert "42" in str(done["outputs"]), done
            assert row(data, eid)["msg_id"] == r["msg_id"], "sent with the msg_id it was accepted with"
            await ok(s, "shutdown_kernel", notebook="one.ipynb")

    asyncio.run(body())


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stop", ["shutdown_kernel", "cancel_execution"])
def test_started_execution_stopped_before_sending_is_not_run(dirs, stop):
    """Accepted as started, then its kernel shut down (or the execution cancelled) before the
    worker sent it: it ends `interrupted` ("not run"), runs nowhere, and no kernel is started
    for it; after a cancel the kernel keeps serving."""
    base, root, data = dirs
    hooks = base / "hooks"
    hooks.mkdir()
    marker = base / "ran"
    nb = f"{stop}.ipynb"

    async def body():
        async with server(base, root, data, hooks=hooks) as s:
            eid, resume = await held_submission(
                s, hooks, nb, f"open({str(marker)!r}, 'w').write('ran')")
            if stop == "shutdown_kernel":
                await ok(s, "shutdown_kernel", notebook=nb)
                pending = None
            else:
                marked = fifo(hooks / "cancel_marked.reached")
                pending = asyncio.create_task(ok(s, "cancel_execution", execution_id=eid))
                await read_fifo(marked)  # the cancel has marked it before the worker goes on
                marked.unlink()
            await release_fifo(resume)
            resume.unlink()
            if pending is not None:
                await pending
            done = await ok(s, "get_execution", execution_id=eid, wait_s=30)
            assert done["status"] == "interrupted", done
            assert "not run" in str(done.get("error")), done
            if stop == "shutdown_kernel":
                kernels = (await ok(s, "list_kernels"))["kernels"]
                assert [k for k in kernels if k.get("pid")] == [], "no kernel was started for it"
            else:
                after = await ok(s, "execute_code", notebook=nb, code="6 * 7")
                assert after["status"] == "completed" and "42" in str(after["outputs"]), after
                await ok(s, "shutdown_kernel", notebook=nb)
        assert not marker.exists(), "it ran"

    asyncio.run(body())
