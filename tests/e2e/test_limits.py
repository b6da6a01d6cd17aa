"""Resource limits on kernels (issue 11 item 3, SPEC §9): `--max-kernels` refuses a start past
the limit with the list of running kernels (the warm pool's count), `--cull-idle-after` stops
an idle kernel after an automatic checkpoint and the next execution says so and offers the
restore, `--kernel-memory-limit` stops a kernel past it and the execution says so; a kernel
killed by SIGKILL from outside is reported as a likely OOM kill."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from helpers import stream_text


async def until(what: str, check, timeout: float = 60.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        got = await check()
        if got:
            return got
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


@pytest.mark.timeout(180)
def test_max_kernels_refuses_a_start_past_the_limit_and_names_the_running_ones(mcp):
    mcp.extra_args = ["--max-kernels", "2", "--kernel-pool", "1"]

    async def body(c):
        for nb in ("a.ipynb", "b.ipynb", "c.ipynb"):
            await c.ok("create_notebook", notebook=nb)
        # The pool kernel holds one of the two slots.
        await until("the pool kernel", lambda: _pool_ready(c))
        r = await c.ok("execute_code", notebook="a.ipynb", code="1 + 1")
        assert r["status"] == "completed", r
        # a.ipynb claimed the pool kernel; the refill takes the second slot.
        await until("the pool refilled", lambda: _pool_ready(c))
        r = await c.ok("execute_code", notebook="b.ipynb", code="2 + 2")
        assert r["status"] == "completed", r
        # Two notebook kernels now; the pool waits (it counts against the limit too).
        st = await c.ok("server_status")
        assert sum(v for k, v in st["kernels"].items() if k != "dead") == 2, st["kernels"]
        r = await c.ok("execute_code", notebook="c.ipynb", code="3 + 3")
        # Accepted (durable), then refused a kernel: the execution fails and says why.
        assert r["status"] == "failed", r
        msg = r["error"]["evalue"]
        assert "--max-kernels 2" in msg and "'a.ipynb'" in msg and "'b.ipynb'" in msg, msg
        assert "shutdown_kernel" in msg, msg
        # Stopping one frees its slot.
        await c.ok("shutdown_kernel", notebook="a.ipynb")
        r = await c.ok("execute_code", notebook="c.ipynb", code="3 + 3")
        assert r["status"] == "completed", r

    mcp.run(body)


async def _pool_ready(c):
    st = await c.ok("server_status")
    return st["pool"]["ready"] >= 1


@pytest.mark.timeout(180)
def test_an_idle_kernel_is_culled_after_a_checkpoint_and_the_next_execution_offers_it(mcp):
    mcp.extra_args = ["--cull-idle-after", "1s", "--auto-checkpoint"]

    async def body(c):
        await c.ok("create_notebook", notebook="idle.ipynb")
        r = await c.ok("execute_code", notebook="idle.ipynb", code="x = 41")
        assert r["status"] == "completed", r

        async def gone():
            return (await c.ok("list_kernels"))["kernels"] == []

        await until("the idle kernel culled", gone, timeout=60)
        saved = await c.ok("list_checkpoints", notebook="idle.ipynb")
        names = [cp["name"] for cp in saved["checkpoints"]]
        assert names == ["auto-1"], saved
        r = await c.ok("execute_code", notebook="idle.ipynb", code="print('again')")
        assert r["status"] == "completed", r
        note = r.get("kernel_note") or ""
        assert "--cull-idle-after" in note and "auto-1" in note, note
        await c.ok("load_environment", notebook="idle.ipynb", name="auto-1")
        r = await c.ok("execute_code", notebook="idle.ipynb", code="print(x + 1)")
        assert stream_text(r["outputs"]) == "42\n", r
        await c.ok("shutdown_kernel", notebook="idle.ipynb")

    mcp.run(body)


@pytest.mark.timeout(180)
def test_a_kernel_past_its_memory_limit_is_stopped_and_the_execution_says_so(mcp):
    mcp.extra_args = ["--kernel-memory-limit", "400M"]

    async def body(c):
        await c.ok("create_notebook", notebook="mem.ipynb")
        r = await c.ok("execute_code", notebook="mem.ipynb", code="small = 1")
        assert r["status"] == "completed", r
        # Touches every page (b'x' * n writes them): resident, not only reserved.
        r = await c.ok("execute_code", notebook="mem.ipynb", timeout_s=120,
                       code="import time\nbig = b'x' * 900_000_000\ntime.sleep(30)")
        assert r["status"] == "failed", r
        said = str(r)
        assert "--kernel-memory-limit" in said and "400 MB" in said, said
        r = await c.ok("execute_code", notebook="mem.ipynb", code="print('fresh')")
        assert r["status"] == "completed", r
        assert "--kernel-memory-limit" in (r.get("kernel_note") or ""), r
        await c.ok("shutdown_kernel", notebook="mem.ipynb")

    mcp.run(body)


@pytest.mark.timeout(180)
def test_a_kernel_killed_from_outside_by_sigkill_is_reported_as_a_likely_oom_kill(mcp):
    async def body(c):
        await c.ok("create_notebook", notebook="oom.ipynb")
        r = await c.ok("execute_code", notebook="oom.ipynb", code="import os; os.getpid()")
        assert r["status"] == "completed", r
        async def sampled():
            [k] = (await c.ok("list_kernels"))["kernels"]
            return k if k.get("memory_bytes") else None

        # The memory watch samples every 2 s without a limit: wait for the first sample.
        k = await until("a memory sample", sampled)
        assert k["memory_bytes"] > 10_000_000, k
        os.killpg(k["pid"], signal.SIGKILL)

        async def gone():
            return (await c.ok("list_kernels"))["kernels"] == []

        await until("the kernel's death noticed", gone)
        r = await c.ok("execute_code", notebook="oom.ipynb", code="print('next')")
        note = r.get("kernel_note") or ""
        assert "out-of-memory killer" in note and "resident memory" in note, note
        await c.ok("shutdown_kernel", notebook="oom.ipynb")

    mcp.run(body)
