"""Checkpoint figures (SPEC §6): save and load of a large pandas DataFrame through MCP.

For each size (default: a small one, then about 1 GB) the script
  - builds a float64 DataFrame of that size (50 columns) in the notebook's kernel,
  - calls save_environment and reports the total time, the kernel's part (dill, write,
    fsync) and the server's part (HMAC-SHA256 + SHA-256 streaming, fsyncs, renames), MB/s,
  - samples the server's RSS every 5 ms during the save (peak, and growth over the idle
    baseline): it should be flat, not growing with the checkpoint's size,
  - restarts the kernel, calls load_environment and reports the total, the server's
    verification (streaming HMAC over the whole file) and the kernel's restore, MB/s,
  - reports the hashing throughput (bytes / server hash time; bytes / verify time).

Figures, never assertions. Kernels are stopped by PID (process group) at the end.

    python bench/bench_checkpoint.py [--sizes-mb 64,1024] [--cols 50] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv"
BINARY = Path(os.environ.get("JUPYTER_MCP_BIN", REPO / "target" / "release" / "jupyter-mcp"))
KERNELS: dict[int, int | None] = {}

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from helpers import PidTracker  # noqa: E402

_TRACKER = PidTracker()
_TRACKER.pids = KERNELS
remember = _TRACKER.remember
stop_kernels = _TRACKER.stop






def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def find_server(data: Path) -> int:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].decode(errors="replace") == str(BINARY) and str(data).encode() in argv:
            return int(entry.name)
    raise RuntimeError("server process not found")


class Sampler:
    """Peak RSS of a process while a block runs (5 ms sampling)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._task = pid, 0, None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss_kb(self.pid))
            await asyncio.sleep(0.005)

    async def __aenter__(self):
        self.peak = rss_kb(self.pid)
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc):
        self._task.cancel()
        self.peak = max(self.peak, rss_kb(self.pid))


async def run(sizes_mb: list[int], cols: int, workdir: Path) -> list[dict]:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    root, data = workdir / "root", workdir / "data"
    root.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_MCP_")}
    env["PATH"] = f"{VENV / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    env["VIRTUAL_ENV"] = str(VENV)
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    params = StdioServerParameters(
        command=str(BINARY),
        args=["serve", "--root", str(root), "--data-dir", str(data), "--stop-kernels-on-exit"],
        env={k: env[k] for k in ("PATH", "VIRTUAL_ENV", "JUPYTER_PLATFORM_DIRS") if k in env},
        cwd=str(root),
    )
    rows_out: list[dict] = []
    with open(workdir / "server.stderr", "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                await session.list_tools()

                async def call(tool: str, **args):
                    res = await session.call_tool(tool, args, read_timeout_seconds=1800)
                    if res.is_error:
                        text = " ".join(getattr(c, "text", "") for c in res.content)
                        raise RuntimeError(f"{tool} failed: {text}")
                    return res.structured_content or {}

                nb = "bench.ipynb"
                try:
                    await call("create_notebook", notebook=nb)
                    remember((await call("start_kernel", notebook=nb)).get("pid"))
                    server = find_server(data)
                    for mb in sizes_mb:
                        rows = mb * 1_000_000 // (8 * cols)
                        code = ("import numpy as np, pandas as pd\n"
                                f"df = pd.DataFrame(np.random.default_rng(0).standard_normal(({rows}, {cols})))\n"
                                "print(df.memory_usage(index=True).sum())")
                        r = await call("execute_code", notebook=nb, code=code, timeout_s=1800)
                        if r.get("status") != "completed":
                            raise RuntimeError(f"building the DataFrame failed: {r}")
                        df_bytes = int("".join(o.get("text") or "" for o in r["outputs"]).strip())
                        await asyncio.sleep(0.5)
                        idle_rss = rss_kb(server)
                        t0 = time.perf_counter()
                        async with Sampler(server) as s_save:
                            s = await call("save_environment", notebook=nb, name=f"df{mb}",
                                           variables=["df"], timeout_s=1800)
                        save_total = time.perf_counter() - t0
                        remember((await call("restart_kernel", notebook=nb)).get("pid"))
                        t0 = time.perf_counter()
                        async with Sampler(server) as s_load:
                            lo = await call("load_environment", notebook=nb, name=f"df{mb}", timeout_s=1800)
                        load_total = time.perf_counter() - t0
                        size = s["bytes"]
                        row = {
                            "dataframe_mb": df_bytes / 1e6,
                            "file_mb": size / 1e6,
                            "save_total_s": save_total,
                            "save_kernel_s": s["kernel_seconds"],
                            "save_server_s": s["server_seconds"],
                            "save_hash_s": s["hash_seconds"],
                            "save_mb_per_s": size / 1e6 / save_total,
                            "load_total_s": load_total,
                            "load_verify_s": lo["verify_seconds"],
                            "load_kernel_s": lo["kernel_seconds"],
                            "load_mb_per_s": size / 1e6 / load_total,
                            "hash_gb_per_s_save": size / 1e9 / max(s["hash_seconds"], 1e-9),
                            "hmac_verify_gb_per_s": size / 1e9 / max(lo["verify_seconds"], 1e-9),
                            "server_idle_rss_mb": idle_rss / 1024,
                            "server_peak_rss_save_mb": s_save.peak / 1024,
                            "server_peak_rss_load_mb": s_load.peak / 1024,
                        }
                        rows_out.append(row)
                        await call("delete_checkpoint", notebook=nb, name=f"df{mb}")
                        await call("execute_code", notebook=nb, code="del df\nimport gc; gc.collect()")
                finally:
                    try:
                        for k in (await call("list_kernels")).get("kernels", []):
                            remember(k.get("pid"))
                    except Exception as exc:
                        print(f"list_kernels failed during cleanup: {exc}", file=sys.stderr)
    return rows_out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes-mb", default="64,1024", help="DataFrame sizes in MB, comma-separated")
    ap.add_argument("--cols", type=int, default=50)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    sizes = [int(x) for x in a.sizes_mb.split(",") if x.strip()]
    with tempfile.TemporaryDirectory(prefix="jmcp-bench-ckpt-") as tmp:
        try:
            rows = asyncio.run(run(sizes, a.cols, Path(tmp)))
        finally:
            stop_kernels()
    print(f"# checkpoint bench: {platform.node()} {os.cpu_count()} cpus, Python {platform.python_version()}")
    print(f"{'DataFrame':>10} {'file':>9} | {'save':>7} {'kernel':>7} {'server':>7} {'MB/s':>6} | "
          f"{'load':>7} {'verify':>7} {'kernel':>7} {'MB/s':>6} | {'hash GB/s':>9} {'HMAC verify GB/s':>16} | "
          f"{'server RSS idle/peak save/peak load MB':>38}")
    for r in rows:
        print(f"{r['dataframe_mb']:>8.0f}MB {r['file_mb']:>7.0f}MB | {r['save_total_s']:>6.2f}s "
              f"{r['save_kernel_s']:>6.2f}s {r['save_server_s']:>6.2f}s {r['save_mb_per_s']:>6.0f} | "
              f"{r['load_total_s']:>6.2f}s {r['load_verify_s']:>6.2f}s {r['load_kernel_s']:>6.2f}s "
              f"{r['load_mb_per_s']:>6.0f} | {r['hash_gb_per_s_save']:>9.2f} {r['hmac_verify_gb_per_s']:>16.2f} | "
              f"{r['server_idle_rss_mb']:>12.1f} / {r['server_peak_rss_save_mb']:>6.1f} / {r['server_peak_rss_load_mb']:>6.1f}")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
