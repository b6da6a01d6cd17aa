"""The warm kernel pool (`serve --kernel-pool N`, issue 10 item 9): the first execution in a
new notebook claims the pooled kernel (same PID) and runs in the notebook's folder; a
replacement starts in the background; no pool kernel outlives the server, and one left by a
killed server is stopped by the next start (never adopted as a notebook's kernel)."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from helpers import pid_alive, proc_start_time, stream_text, wait_pids_gone


async def pool_pids(c, want: int, timeout: float = 60.0) -> list[int]:
    """Waits until the pool has `want` ready kernels; returns their PIDs."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        st = await c.ok("server_status")
        if st["pool"]["ready"] >= want:
            return st["pool"]["pids"]
        assert loop.time() < deadline, f"pool not ready: {st['pool']}"
        await asyncio.sleep(0.1)


@pytest.mark.timeout(180)
def test_first_execution_claims_the_pooled_kernel(mcp):
    mcp.extra_args = ["--kernel-pool", "1"]
    (mcp.root / "sub").mkdir()
    (mcp.root / "sub" / "localmod.py").write_text("VALUE = 7\n")

    async def body(c):
        [pooled] = await pool_pids(c, 1)
        st = await c.ok("server_status")
        assert st["pool"]["size"] == 1 and st["kernels"].get("pool") == 1
        assert (await c.ok("list_kernels"))["kernels"] == [], "pool kernels belong to no notebook"

        await c.ok("create_notebook", notebook="sub/new.ipynb")
        r = await c.ok("execute_code", notebook="sub/new.ipynb",
                       code="import os; print(os.getpid()); print(os.getcwd())")
        assert r["status"] == "completed", r
        pid_line, cwd_line = stream_text(r["outputs"]).splitlines()
        assert int(pid_line) == pooled, "the pooled kernel ran the first execution"
        assert os.path.realpath(cwd_line) == os.path.realpath(mcp.root / "sub")
        kernels = (await c.ok("list_kernels"))["kernels"]
        assert [(k["notebook"], k["pid"]) for k in kernels] == [("sub/new.ipynb", pooled)]

        # A replacement is started in the background; it is a different kernel.
        [fresh] = await pool_pids(c, 1)
        assert fresh != pooled and pid_alive(fresh)
        # Modules beside the notebook import as in a kernel started in its folder; the
        # move left nothing in the user's namespace.
        r = await c.ok("execute_code", notebook="sub/new.ipynb",
                       code="import localmod; print(localmod.VALUE, '__jmcp_cd' in dir())")
        assert stream_text(r["outputs"]) == "7 False\n", r
        # The claimed kernel keeps its state like any notebook's kernel.
        r = await c.ok("execute_code", notebook="sub/new.ipynb", code="x = 5\nx * 2")
        assert r["status"] == "completed"
        return pooled, fresh, proc_start_time(fresh)

    pooled, fresh, fresh_start = mcp.run(body)
    # --stop-kernels-on-exit (the harness's default): neither the claimed kernel nor the pool
    # kernel outlives the server.
    assert not wait_pids_gone({pooled: None, fresh: fresh_start}, 10), "a kernel outlived the server"


@pytest.mark.timeout(180)
def test_a_killed_servers_pool_kernel_is_stopped_at_the_next_start(mcp):
    mcp.extra_args = ["--kernel-pool", "1"]
    seen: dict[str, int | None] = {}

    async def killed(c):
        [pooled] = await pool_pids(c, 1)
        seen["pid"], seen["start"] = pooled, proc_start_time(pooled)
        os.kill(parent_of(pooled), signal.SIGKILL)  # the server that started it

    try:
        mcp.run(killed)
    except Exception:  # the session may end in an error once its server is gone
        pass
    pooled, start = seen["pid"], seen["start"]
    assert pid_alive(pooled, start), "a pool kernel survives a SIGKILL of its server"

    mcp.extra_args = []

    async def second(c):
        assert not wait_pids_gone({pooled: start}, 10), "the next start stopped the old pool kernel"
        assert (await c.ok("list_kernels"))["kernels"] == [], "never adopted as a notebook's kernel"
        assert (await c.ok("server_status"))["kernels"] == {}

    mcp.run(second)


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        raw = f.read()
    return int(raw[raw.rindex(")") + 2:].split()[1])
