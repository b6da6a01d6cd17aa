"""Warm kernel pool figure (issue 10 item 9), printed, never asserted: time of the first
`execute_code` ("1 + 1") in a new notebook, from the call to its answer, with
`serve --kernel-pool 1` (after the pool kernel is ready) and without (the kernel boots).
Each round uses a fresh notebook; with the pool, the next round waits for the replacement.

Usage: scripts/bench.sh pool [--rounds N]   (or: source scripts/env.sh; python bench/bench_pool.py)
Kills everything it started, by PID (kernels found through the bench's own data dir).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "e2e"))

from mcp import ClientSession  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

import chaos  # noqa: E402
from helpers import kill_pids, pids_mentioning  # noqa: E402


async def first_executions(base: Path, pool: int, rounds: int) -> list[float]:
    root, data = base / f"root{pool}", base / f"data{pool}"
    root.mkdir()
    extra = ("--stop-kernels-on-exit", "--kernel-pool", str(pool))
    times = []
    try:
        async with stdio_client(chaos.server_params(root, data, base, extra)) as (r, w):
            async with ClientSession(r, w) as s:
                await s.initialize()
                for i in range(rounds):
                    while pool and (await chaos.call(s, "server_status"))["pool"]["ready"] < pool:
                        await asyncio.sleep(0.05)
                    await chaos.call(s, "create_notebook", notebook=f"n{i}.ipynb")
                    t0 = time.perf_counter()
                    res = await chaos.call(s, "execute_code", notebook=f"n{i}.ipynb", code="1 + 1")
                    times.append(time.perf_counter() - t0)
                    assert res["status"] == "completed", res
                    await chaos.call(s, "shutdown_kernel", notebook=f"n{i}.ipynb")
    finally:
        left = pids_mentioning(data)
        if left:
            kill_pids(left)
    return times


def summary(name: str, xs: list[float]) -> str:
    ms = sorted(x * 1000 for x in xs)
    return (f"{name:<28} n={len(ms):<3} p50 {statistics.median(ms):7.1f} ms   "
            f"min {ms[0]:7.1f} ms   max {ms[-1]:7.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="jmcp-bench-pool-") as tmp:
        base = Path(tmp)
        (base / "ipython").mkdir()
        cold = asyncio.run(first_executions(base, 0, args.rounds))
        warm = asyncio.run(first_executions(base, 1, args.rounds))
    print("first execute_code in a new notebook (call to answer):")
    print(summary("without pool (kernel boots)", cold))
    print(summary("with --kernel-pool 1", warm))


if __name__ == "__main__":
    main()
