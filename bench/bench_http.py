"""Daemon mode figures (issue 10): N concurrent MCP sessions over Streamable HTTP, each on its
own notebook, executing `1+1` in a loop through the official MCP Python SDK.

Prints aggregate executions/s, per-call p50/p99 (ms), and the daemon's RSS with N kernels and
N sessions open. Figures, never assertions. The daemon and its kernels are stopped by PID.

    python bench/bench_http.py [--sessions 20] [--n 20]
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

from daemon import Daemon, cleanup  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run(d: Daemon, sessions: int, n: int) -> tuple[list[float], float, float]:
    latencies: list[float] = []
    ready = asyncio.Barrier(sessions + 1)
    hold = asyncio.Event()
    rss: list[float] = []

    async def one(i: int) -> None:
        async with d.session() as s:
            nb = f"n{i}.ipynb"
            await s.call_tool("create_notebook", {"notebook": nb})
            await s.call_tool("execute_code", {"notebook": nb, "code": "0"})  # kernel start
            await ready.wait()
            for _ in range(n):
                t = time.perf_counter()
                r = await s.call_tool("execute_code", {"notebook": nb, "code": "1+1"})
                latencies.append(time.perf_counter() - t)
                assert r.structured_content["status"] == "completed", r
            await hold.wait()

    tasks = [asyncio.create_task(one(i)) for i in range(sessions)]
    await ready.wait()
    start = time.perf_counter()
    while len(latencies) < sessions * n:
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - start
    rss.append(rss_mib(d.proc.pid))
    hold.set()
    await asyncio.gather(*tasks)
    return latencies, elapsed, rss[0]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--n", type=int, default=20)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        root, data = base / "root", base / "data"
        for p in (root, data, base / "ipython"):
            p.mkdir()
        d = Daemon(base, root, data, extra=("--stop-kernels-on-exit",))
        try:
            lat, elapsed, rss = asyncio.run(run(d, a.sessions, a.n))
        finally:
            d.stop()
            cleanup(data)
    lat.sort()
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
    print(f"{a.sessions} HTTP sessions x {a.n} execute_code(1+1), each on its own notebook/kernel")
    print(f"  aggregate: {len(lat) / elapsed:.1f} executions/s over {elapsed:.2f} s")
    print(f"  per call:  p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, mean {statistics.mean(lat) * 1000:.1f} ms")
    print(f"  daemon RSS with {a.sessions} kernels and {a.sessions} sessions: {rss:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
