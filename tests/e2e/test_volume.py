"""Bounded answers, bounded memory, bounded notebook reads (issue 8 item 9, issue 9 items 8-9).

Every result has a total byte budget (--max-result-bytes, default 48 KiB) with paging for the
rest; an execution keeps at most --max-execution-output-bytes of outputs (the middle goes to
an asset); a notebook file past --max-notebook-bytes is refused without being read. Sizes
are measured on what the official SDK received; memory from /proc/PID/status (VmHWM) and
bytes written from /proc/PID/io (wchar) of the server process: counters, not timings.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat

from helpers import pids_mentioning, text_of

BUDGET = 48 * 1024
# Structured content, the text block and resource links count; allow the SDK's framing.
SLACK = 2 * 1024


def result_bytes(sc, res) -> int:
    links = [c for c in (res.content or []) if getattr(c, "type", None) == "resource_link"]
    return (len(json.dumps(sc, separators=(",", ":"), ensure_ascii=False).encode())
            + len(text_of(res).encode())
            + sum(len(c.model_dump_json().encode()) for c in links))


def server_pid(data: Path, binary: Path) -> int:
    for pid in pids_mentioning(data):
        try:
            if os.readlink(f"/proc/{pid}/exe") == str(binary.resolve()):
                return pid
        except OSError:
            continue
    raise AssertionError("server process not found")


def proc_field(pid: int, file: str, key: str) -> int:
    for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{key} not in /proc/{pid}/{file}")


def test_a_flood_of_outputs_is_bounded_in_answers_memory_and_writes(mcp, binary):
    n = 30_000
    mcp.extra_args = ["--max-execution-output-bytes", str(256 * 1024)]

    async def body(c):
        await c.ok("create_notebook", notebook="flood.ipynb", cells=[])
        pid = server_pid(mcp.data, binary)
        written_before = proc_field(pid, "io", "wchar")
        r, res = await c.call("execute_code", notebook="flood.ipynb",
                              code=f"for i in range({n}):\n    display(i)", timeout_s=300,
                              read_timeout=600)
        assert not res.is_error, text_of(res)
        if r["status"] != "completed":
            r = await c.wait_done(r["execution_id"], timeout=300)
            r, res = await c.call("get_execution", execution_id=r["execution_id"])
        assert r["status"] == "completed", r
        size = result_bytes(r, res)
        assert size <= BUDGET + SLACK, size
        shown = r["outputs_shown"]
        assert shown["next_offset"] is not None, shown
        first = r["outputs"][0]["text"]
        assert first == "0", r["outputs"][0]
        assert r["outputs"][-1]["text"] == str(n - 1)
        assert "output_offset=" in text_of(res)
        # The middle is in a spilled-outputs asset, named by the marker output.
        marker = [o for o in r["outputs"] if "not kept here" in (o.get("text") or "")]
        assert marker, [o.get("text") for o in r["outputs"]][:8]
        uri = marker[0]["text"].split('read_asset(asset="')[1].split('"')[0]
        page = await c.ok("read_asset", asset=uri, offset=0, limit=3)
        assert json.loads(page["text"].splitlines()[0])["output_type"] == "display_data"
        # Paging through the outputs with output_offset.
        p, pres = await c.call("get_execution", execution_id=r["execution_id"],
                               output_offset=shown["next_offset"])
        assert not pres.is_error and result_bytes(p, pres) <= BUDGET + SLACK
        assert p["outputs_shown"]["ranges"][0][0] == shown["next_offset"]
        # Server memory stayed flat and the store was not rewritten O(n^2) times.
        peak_kib = proc_field(pid, "status", "VmHWM")
        written = proc_field(pid, "io", "wchar") - written_before
        print(f"server peak RSS {peak_kib} KiB, bytes written {written}")
        assert peak_kib < 400 * 1024, peak_kib
        assert written < 40 * 1024 * 1024, written

    mcp.run(body)


def test_read_notebook_of_many_outputs_and_a_huge_source_fits_the_budget(mcp):
    nb = nbformat.v4.new_notebook()
    big = nbformat.v4.new_code_cell("x = 1\n" * 400_000)  # 2.4 MB of source
    many = nbformat.v4.new_code_cell("for i in range(50000): print(i)")
    many.outputs = [nbformat.v4.new_output("display_data", data={"text/plain": str(i)})
                    for i in range(50_000)]
    nb.cells = [big, many] + [nbformat.v4.new_code_cell(f"y = {i}") for i in range(2_000)]
    nbformat.write(nb, mcp.root / "big.ipynb")

    async def body(c):
        r, res = await c.call("read_notebook", notebook="big.ipynb", read_timeout=300)
        assert not res.is_error, text_of(res)
        assert result_bytes(r, res) <= BUDGET + SLACK, result_bytes(r, res)
        first = r["cells"][0]
        assert first["source_truncated"]["total_bytes"] == len(big.source.encode())
        assert first["source"].startswith("x = 1\n")
        assert r["next_start"] is not None and r["next_start"] < 2_002
        # The cell with 50,000 outputs shows a window of them.
        r2, res2 = await c.call("read_notebook", notebook="big.ipynb", start=1, end=2)
        assert result_bytes(r2, res2) <= BUDGET + SLACK
        cell = r2["cells"][0]
        assert cell["outputs_shown"]["total_outputs"] == 50_000
        assert len(cell["outputs"]) < 1_000
        assert "not shown" in text_of(res2)
        # Paging on with start reaches the last cell.
        start, seen = r["next_start"], len(r["cells"])
        while start is not None:
            p, pres = await c.call("read_notebook", notebook="big.ipynb", start=start, outputs="none")
            assert not pres.is_error and result_bytes(p, pres) <= BUDGET + SLACK
            seen += len(p["cells"])
            start = p.get("next_start")
        assert seen == 2_002

    mcp.run(body)


def test_run_all_cells_of_many_cells_answers_within_the_budget(mcp):
    cells = [nbformat.v4.new_code_cell(f"print('cell {i}')") for i in range(800)]
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    nbformat.write(nb, mcp.root / "many.ipynb")

    async def body(c):
        r, res = await c.call("run_all_cells", notebook="many.ipynb", timeout_s=300, read_timeout=600)
        assert not res.is_error, text_of(res)
        assert result_bytes(r, res) <= BUDGET + SLACK, result_bytes(r, res)
        unlisted = r["unlisted"]
        assert unlisted["count"] + len(r["executions"]) == 800
        last = await c.wait_done(unlisted["last_execution_id"], timeout=300)
        assert last["status"] == "completed", last

    mcp.run(body)


def test_notebooks_past_the_size_cap_are_refused_unread(mcp, binary):
    sparse = mcp.root / "huge.ipynb"
    with open(sparse, "wb") as f:
        f.truncate(3 << 30)  # 3 GiB, sparse: costs nothing on disk
    nbformat.write(nbformat.v4.new_notebook(), mcp.root / "small.ipynb")
    mcp.extra_args = ["--max-notebook-bytes", "100000"]

    async def body(c):
        pid = server_pid(mcp.data, binary)
        msg = await c.err("read_notebook", notebook="huge.ipynb")
        assert "--max-notebook-bytes" in msg and "huge.ipynb" in msg, msg
        assert "3221225472 bytes" in msg, msg
        await c.ok("read_notebook", notebook="small.ipynb")
        assert proc_field(pid, "status", "VmHWM") < 400 * 1024

    mcp.run(body)
