"""Storage figures (SPEC §8, issue 11), printed, never asserted. A real stale mount: the
FUSE passthrough of tests/e2e/fusefs.py, frozen on command.

1. freeze -> first fast failure: the data dir is frozen; `execute_code` is called in a loop;
   time from the freeze to the first call that comes back as a tool error, and how long
   each failing call took before and after the breaker opened.
2. thaw -> first success: time from the thaw to the first `execute_code` that completes.
3. healthy notebook while another's storage is frozen: one server, root with a FUSE mount
   inside it (`remote/`); `execute_code` latency on `local.ipynb` with `remote/` healthy vs
   frozen (p50, p90; ratio).

Usage: scripts/bench.sh storage [--timeout S] [--interval S] [--n N]
Kills everything it started, by PID; always thaws and unmounts.
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

from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

from conftest import BINARY, server_env  # noqa: E402
from fusefs import FuseMount, fuse_unavailable  # noqa: E402
from helpers import kill_pids, pids_mentioning, write_nb  # noqa: E402


def params(root: Path, data: Path, base: Path, timeout: float, interval: float) -> StdioServerParameters:
    (base / "ipython").mkdir(exist_ok=True)
    (base / "mpl").mkdir(exist_ok=True)
    return StdioServerParameters(
        command=str(BINARY),
        args=["serve", "--root", str(root), "--data-dir", str(data), "--stop-kernels-on-exit",
              "--storage-timeout", str(timeout), "--storage-probe-interval", str(interval)],
        env=server_env(data, base / "ipython", base / "mpl"),
        cwd=str(base),
    )


async def timed(s: ClientSession, tool: str, **args):
    t0 = time.perf_counter()
    r = await s.call_tool(tool, args, read_timeout_seconds=60)
    return time.perf_counter() - t0, r


async def freeze_thaw(base: Path, timeout: float, interval: float) -> dict:
    root = base / "root"
    root.mkdir()
    write_nb(root / "n.ipynb", [("code", "1")])
    with FuseMount(base / "data-src", base / "data-mnt") as fs:
        data = base / "data-mnt" / "data"
        try:
            async with stdio_client(params(root, data, base, timeout, interval)) as (r, w):
                async with ClientSession(r, w) as s:
                    await s.initialize()
                    await s.call_tool("execute_code", {"notebook": "n.ipynb", "code": "x = 1"})
                    fs.freeze()
                    t_freeze = time.perf_counter()
                    fails: list[float] = []
                    first_fail = None
                    try:
                        while len(fails) < 10:
                            dt, res = await timed(s, "execute_code", notebook="n.ipynb", code="x")
                            if res.is_error:
                                first_fail = first_fail or time.perf_counter() - t_freeze
                                fails.append(dt)
                    finally:
                        fs.thaw()
                    t_thaw = time.perf_counter()
                    while True:
                        dt, res = await timed(s, "execute_code", notebook="n.ipynb", code="x")
                        if not res.is_error:
                            break
                    to_success = time.perf_counter() - t_thaw
        finally:
            kill_pids(pids_mentioning(data))
    return {"first_fail_s": first_fail, "fail_call_s": fails, "thaw_to_success_s": to_success}


async def healthy_beside_frozen(base: Path, timeout: float, interval: float, n: int) -> dict:
    root = base / "root2"
    data = base / "data2"
    root.mkdir()
    data.mkdir()
    write_nb(root / "local.ipynb", [("code", "1")])
    out: dict[str, list[float]] = {}
    with FuseMount(base / "remote-src", root / "remote") as fs:
        write_nb(root / "remote" / "far.ipynb", [("code", "1")])
        try:
            async with stdio_client(params(root, data, base, timeout, interval)) as (r, w):
                async with ClientSession(r, w) as s:
                    await s.initialize()
                    await s.call_tool("execute_code", {"notebook": "remote/far.ipynb", "code": "1"})
                    for _ in range(10):
                        await s.call_tool("execute_code", {"notebook": "local.ipynb", "code": "1+1"})
                    for label in ("healthy", "frozen"):
                        if label == "frozen":
                            fs.freeze()
                            # Something keeps knocking on the frozen folder meanwhile.
                            await s.call_tool("read_notebook", {"notebook": "remote/far.ipynb"})
                        try:
                            lat = []
                            for _ in range(n):
                                dt, _res = await timed(s, "execute_code", notebook="local.ipynb", code="1+1")
                                lat.append(dt * 1000)
                            out[label] = lat
                        finally:
                            fs.thaw()
        finally:
            kill_pids(pids_mentioning(data))
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=1.0, help="--storage-timeout (s)")
    ap.add_argument("--interval", type=float, default=0.5, help="--storage-probe-interval (s)")
    ap.add_argument("--n", type=int, default=100, help="calls per latency sample")
    a = ap.parse_args()
    why = fuse_unavailable()
    if why:
        print(f"bench_storage: skipped: {why}")
        return
    with tempfile.TemporaryDirectory(prefix="jmcp-bench-storage-") as tmp:
        base = Path(tmp)
        ft = asyncio.run(freeze_thaw(base, a.timeout, a.interval))
        hb = asyncio.run(healthy_beside_frozen(base, a.timeout, a.interval, a.n))
    print(f"storage bench: --storage-timeout {a.timeout} s, --storage-probe-interval {a.interval} s")
    f = ft["fail_call_s"]
    print(f"freeze -> first fast failure: {ft['first_fail_s']:.2f} s "
          f"(first failing call took {f[0]:.2f} s; later ones p50 {statistics.median(f[1:]) * 1000:.1f} ms)")
    print(f"thaw -> first success: {ft['thaw_to_success_s']:.2f} s")
    h, z = hb["healthy"], hb["frozen"]
    print(f"execute_code on a healthy notebook, n={a.n}: other folder healthy p50 {pct(h, .5):.2f} ms "
          f"p90 {pct(h, .9):.2f} ms; other folder frozen p50 {pct(z, .5):.2f} ms p90 {pct(z, .9):.2f} ms; "
          f"ratio p50 {pct(z, .5) / pct(h, .5):.2f}")


if __name__ == "__main__":
    main()
