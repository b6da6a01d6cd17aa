"""Bytes an agent receives per tool call against the size of the raw outputs (issue 4).

A standard session through MCP stdio against the release binary: load a CSV with pandas,
describe it, plot it, print a long log, then read the notebook back. For each tool call it
prints
  - raw:      the cell's outputs as nbformat JSON in the .ipynb (what a client that passes
              outputs through unbounded would hand the model)
  - content:  the MCP `content` blocks (text, image data, resource links) as JSON: what the
              model reads
  - result:   the whole CallToolResult as JSON (content + structuredContent)
Figures, never assertions. Kernels are stopped by PID (process group) at the end.

    python bench/bench_outputs.py [--rows 20000] [--log-lines 20000] [--json out.json]
(source scripts/env.sh first: it puts .venv on PATH.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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
from helpers import PidTracker, proc_start_time  # noqa: E402

_TRACKER = PidTracker()
_TRACKER.pids = KERNELS
remember = _TRACKER.remember
stop_kernels = _TRACKER.stop





def server_env(mpl_dir: Path) -> dict[str, str]:
    env = {
        "PATH": f"{VENV / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "VIRTUAL_ENV": str(VENV),
        "RUST_LOG": "warn",
        "JUPYTER_PLATFORM_DIRS": "1",
        "MPLCONFIGDIR": str(mpl_dir),
    }
    return env


def write_csv(path: Path, rows: int) -> None:
    import random

    rnd = random.Random(4)
    with path.open("w") as f:
        f.write("date,region,product,units,price\n")
        for i in range(rows):
            f.write(f"2026-{1 + i % 12:02d}-{1 + i % 28:02d},{rnd.choice(['north', 'south', 'east', 'west'])},"
                    f"p{rnd.randrange(50)},{rnd.randrange(1, 500)},{rnd.uniform(1, 100):.2f}\n")


def cells(log_lines: int) -> list[tuple[str, str]]:
    return [
        ("load CSV", "import pandas as pd\ndf = pd.read_csv('sales.csv', parse_dates=['date'])\ndf"),
        ("describe", "df.describe(include='all')"),
        ("plot", "import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
                 "import matplotlib.pyplot as plt\n"
                 "df.groupby(['date', 'region'])['units'].sum().unstack().plot(figsize=(10, 5))\n"
                 "plt.show()"),
        ("long log", f"for i in range({log_lines}):\n"
                     "    print(f'[{i:06d}] batch ok: rows={i * 17 % 1000} mean={i * 0.37:.3f} "
                     "status=processed')"),
    ]


async def run(args: argparse.Namespace, work: Path) -> list[dict]:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    root, data, mpl = work / "root", work / "data", work / "mpl"
    for d in (root, data, mpl):
        d.mkdir()
    write_csv(root / "sales.csv", args.rows)
    params = StdioServerParameters(
        command=str(BINARY),
        args=["serve", "--root", str(root), "--data-dir", str(data), "--stop-kernels-on-exit"],
        env=server_env(mpl), cwd=str(root))
    rows: list[dict] = []
    with open(work / "server.stderr", "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()

                async def call(tool: str, **a):
                    r = await session.call_tool(tool, a, read_timeout_seconds=300)
                    if r.is_error:
                        raise RuntimeError(f"{tool} failed: {r.content}")
                    for k in (r.structured_content or {}).get("kernels", []):
                        if isinstance(k.get("pid"), int):
                            KERNELS.setdefault(k["pid"], proc_start_time(k["pid"]))
                    return r

                spec = cells(args.log_lines)
                r = await call("create_notebook", notebook="session.ipynb",
                               cells=[{"cell_type": "code", "source": src} for _, src in spec])
                ids = r.structured_content["cell_ids"]
                await call("start_kernel", notebook="session.ipynb")
                await call("list_kernels")
                results = []
                for (label, _), cid in zip(spec, ids):
                    results.append((label, await call("execute_cell", notebook="session.ipynb",
                                                      cell_id=cid, timeout_s=240)))
                await asyncio.sleep(0.8)  # write-back batches trail the reply by <= 0.5 s
                nb = json.loads((root / "session.ipynb").read_text())
                raw_by_id = {c["id"]: len(json.dumps(c.get("outputs", []), separators=(",", ":")))
                             for c in nb["cells"]}
                for (label, r), cid in zip(results, ids):
                    rows.append(measure(f"execute_cell: {label}", raw_by_id[cid], r))
                r = await call("read_notebook", notebook="session.ipynb")
                rows.append(measure("read_notebook (summary)", sum(raw_by_id.values()), r))
                r = await call("read_notebook", notebook="session.ipynb", outputs="full")
                rows.append(measure("read_notebook (full)", sum(raw_by_id.values()), r))
    return rows


def measure(label: str, raw: int, r) -> dict:
    content = [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in r.content]
    images = sum(len(c.get("data", "")) for c in content if c.get("type") == "image")
    links = sum(1 for c in content if c.get("type") == "resource_link")
    return {
        "call": label,
        "raw_bytes": raw,
        "content_bytes": len(json.dumps(content, separators=(",", ":"))),
        "image_bytes": images,
        "resource_links": links,
        "result_bytes": len(json.dumps(r.model_dump(mode="json", by_alias=True, exclude_none=True),
                                       separators=(",", ":"))),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000, help="rows of the CSV")
    ap.add_argument("--log-lines", type=int, default=20_000, help="lines the log cell prints")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    if not BINARY.is_file():
        print(f"{BINARY} missing: cargo build --release first", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-outputs-") as tmp:
        try:
            rows = asyncio.run(run(args, Path(tmp)))
        finally:
            stop_kernels()
    print(f"jupyter-mcp bytes per tool call vs raw outputs (CSV {args.rows} rows, log {args.log_lines} lines)")
    print(f"{'call':28} {'raw outputs':>12} {'to the model':>13} {'(images)':>10} {'links':>6} "
          f"{'whole result':>13} {'model/raw':>10}")
    for r in rows:
        ratio = r["content_bytes"] / r["raw_bytes"] if r["raw_bytes"] else float("nan")
        print(f"{r['call']:28} {r['raw_bytes']:>12,} {r['content_bytes']:>13,} {r['image_bytes']:>10,} "
              f"{r['resource_links']:>6} {r['result_bytes']:>13,} {ratio:>9.1%}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
