"""Durability figures (issue 3), printed, never asserted:

1. restart-to-ready: 10 live kernels (each busy with a sleeping cell) and 1,000 pending
   executions; the server is killed with SIGKILL and started again; time from spawn to the
   MCP initialize response (recovery runs before serving) and to list_kernels showing all 10.
2. server CPU while 50 executions wait on sleeping cells (5 notebooks x 10 queued, each
   first cell sleeping), with 50 concurrent get_execution long-polls: utime+stime of the
   server process over a 10 s window, as % of one core.
3. run_all_cells throughput on 1,000 trivial cells against a raw jupyter_client loop
   (execute + wait for reply and idle, one at a time) on the same kind of kernel.

Usage: scripts/bench.sh durability   (or: source scripts/env.sh; python bench/bench_durability.py)
Kills everything it started, by PID (kernels found through the bench's own data dir).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "e2e"))

import nbformat  # noqa: E402
from jupyter_client.manager import start_new_kernel  # noqa: E402
from mcp import ClientSession  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

import chaos  # noqa: E402
from helpers import kill_pids, pids_mentioning  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def call(s: ClientSession, tool: str, **args):
    return await chaos.call(s, tool, **args)


async def restart_to_ready(base: Path) -> dict:
    root, data = base / "root", base / "data"
    n_kernels, per_kernel = 10, 100
    async with stdio_client(chaos.server_params(root, data, base)) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            for k in range(n_kernels):
                nb = f"n{k}.ipynb"
                await call(s, "create_notebook", notebook=nb)
                await call(s, "execute_code", notebook=nb, code="import time", timeout_s=60)
                await call(s, "execute_code", notebook=nb, code="time.sleep(600)", timeout_s=0)
                for i in range(per_kernel - 1):
                    await call(s, "execute_code", notebook=nb, code=f"x = {i}", timeout_s=0)
            for pid in chaos.server_pids(data):
                os.kill(pid, signal.SIGKILL)
    t0 = time.perf_counter()
    async with stdio_client(chaos.server_params(root, data, base)) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            t_init = time.perf_counter() - t0
            kernels = (await call(s, "list_kernels"))["kernels"]
            t_ready = time.perf_counter() - t0
            pending = (await call(s, "list_executions", status="pending", limit=1000))["executions"]
            for k in range(n_kernels):
                await call(s, "shutdown_kernel", notebook=f"n{k}.ipynb")
    return {
        "kernels_reattached": len(kernels),
        "pending_after_restart": len(pending),
        "initialize_s": t_init,
        "ready_s": t_ready,
    }


async def idle_cpu(base: Path) -> dict:
    root, data = base / "root2", base / "data2"
    root.mkdir()
    async with stdio_client(chaos.server_params(root, data, base)) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            ids = []
            for k in range(5):
                nb = f"c{k}.ipynb"
                await call(s, "create_notebook", notebook=nb)
                await call(s, "execute_code", notebook=nb, code="import time", timeout_s=60)
                for i in range(10):
                    sc = await call(s, "execute_code", notebook=nb, code="time.sleep(30)", timeout_s=0)
                    ids.append(sc["execution_id"])
            server = chaos.server_pids(data)[0]
            await asyncio.sleep(1.0)
            polls = [asyncio.create_task(call(s, "get_execution", execution_id=i, wait_s=25)) for i in ids]
            await asyncio.sleep(1.0)
            c0, t0 = cpu_seconds(server), time.perf_counter()
            await asyncio.sleep(10.0)
            c1, t1 = cpu_seconds(server), time.perf_counter()
            for k in range(5):
                await call(s, "shutdown_kernel", notebook=f"c{k}.ipynb")
            await asyncio.gather(*polls, return_exceptions=True)
    return {"waiting_executions": len(ids), "server_cpu_percent": 100 * (c1 - c0) / (t1 - t0)}


async def run_all_throughput(base: Path, n: int) -> dict:
    root, data = base / "root3", base / "data3"
    root.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"x = {i}") for i in range(n)]
    nbformat.write(nb, root / "t.ipynb")
    async with stdio_client(chaos.server_params(root, data, base)) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            await call(s, "start_kernel", notebook="t.ipynb")
            t0 = time.perf_counter()
            res = await s.call_tool("run_all_cells", {"notebook": "t.ipynb", "timeout_s": 600},
                                    read_timeout_seconds=None)
            mcp_s = time.perf_counter() - t0
            statuses = [e["status"] for e in res.structured_content["executions"]]
            await call(s, "shutdown_kernel", notebook="t.ipynb")
    done = sum(1 for x in statuses if x == "completed")
    km, kc = start_new_kernel(kernel_name="python3", extra_arguments=["--HistoryManager.hist_file=:memory:"])
    try:
        t0 = time.perf_counter()
        for i in range(n):
            kc.execute_interactive(f"x = {i}", timeout=60, output_hook=lambda m: None)
        raw_s = time.perf_counter() - t0
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return {"cells": n, "completed": done, "mcp_s": mcp_s, "raw_s": raw_s,
            "mcp_cells_per_s": n / mcp_s, "raw_cells_per_s": n / raw_s, "ratio": (n / mcp_s) / (n / raw_s)}


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="bench-durability-"))
    for d in ("root", "data", "ipython"):
        (base / d).mkdir()
    try:
        r1 = asyncio.run(restart_to_ready(base))
        r2 = asyncio.run(idle_cpu(base))
        r3 = asyncio.run(run_all_throughput(base, int(os.environ.get("BENCH_CELLS", "1000"))))
    finally:
        for d in ("data", "data2", "data3"):
            left = pids_mentioning(base / d)
            if left:
                kill_pids(left)
    print(f"jupyter-mcp durability bench: {os.cpu_count()} cpus")
    print(f"restart-to-ready, {r1['kernels_reattached']} live kernels, {r1['pending_after_restart']} pending: "
          f"initialize {r1['initialize_s'] * 1000:.0f} ms, list_kernels {r1['ready_s'] * 1000:.0f} ms")
    print(f"server CPU while {r2['waiting_executions']} executions wait on sleeping cells: "
          f"{r2['server_cpu_percent']:.2f} % of a core")
    print(f"run_all_cells {r3['cells']} trivial cells: {r3['mcp_cells_per_s']:.0f} cells/s "
          f"({r3['completed']} completed) vs raw jupyter_client {r3['raw_cells_per_s']:.0f} cells/s: "
          f"ratio {r3['ratio']:.2f}")


if __name__ == "__main__":
    main()
