"""Execution lifecycle with real kernels: timeouts, interrupts, restarts, concurrency,
IOPub floods, dying kernels, run_all_cells and cancellation."""

from __future__ import annotations

import anyio
import nbformat
import pytest

from helpers import (
    TERMINAL,
    cell_by_id,
    parse_time,
    pid_alive,
    plain_text,
    read_nb,
    rendered_text,
    stream_text,
    text_of,
    validate_file,
    wait_gone,
    write_nb,
)


@pytest.mark.timeout(120)
def test_timeout_returns_running_then_interrupt(mcp):
    path = mcp.root / "sleep.ipynb"
    src = "import time\nprint('start', flush=True)\ntime.sleep(60)\nprint('never')"

    async def body(c):
        sc = await c.ok("create_notebook", notebook="sleep.ipynb",
                        cells=[{"cell_type": "code", "source": src}])
        cid = sc["cell_ids"][0]
        await c.ok("start_kernel", notebook="sleep.ipynb")

        t0 = anyio.current_time()
        r = await c.ok("execute_cell", notebook="sleep.ipynb", cell_id=cid, timeout_s=1)
        waited = anyio.current_time() - t0
        assert r["status"] == "running", r
        assert r["execution_id"] and r["cell_id"] == cid
        assert waited < 20, f"execute_cell(timeout_s=1) took {waited:.1f}s"
        eid = r["execution_id"]

        # The cell keeps running after the tool returned.
        await anyio.sleep(1.5)
        g = await c.ok("get_execution", execution_id=eid)
        assert g["status"] == "running", g
        assert "start" in stream_text(g["outputs"]), "outputs so far are visible while running"
        ks = await c.ok("list_kernels")
        mine = [k for k in ks["kernels"] if k["notebook"].endswith("sleep.ipynb")]
        assert mine and mine[0]["state"] == "busy", ks

        t1 = anyio.current_time()
        g = await c.ok("get_execution", execution_id=eid, wait_s=1)
        assert g["status"] == "running"
        assert anyio.current_time() - t1 >= 0.9, "wait_s=1 on a running execution waits ~1 s"

        await c.ok("interrupt_kernel", notebook="sleep.ipynb")
        t2 = anyio.current_time()
        g = await c.ok("get_execution", execution_id=eid, wait_s=10)
        assert g["status"] == "interrupted", g
        assert anyio.current_time() - t2 < 10
        assert g.get("finished_at")
        assert "never" not in stream_text(g["outputs"])

        # The kernel survived the interrupt and keeps its state.
        ok = await c.ok("execute_code", notebook="sleep.ipynb", code="time.time() > 0")
        assert ok["status"] == "completed" and "True" in rendered_text(ok)

    mcp.run(body)
    nb = validate_file(path)
    assert stream_text(nb.cells[0].outputs).startswith("start\n"), "outputs produced before the interrupt are kept"


@pytest.mark.timeout(120)
def test_restart_kernel_forgets_variables(mcp):
    async def body(c):
        await c.ok("create_notebook", notebook="r.ipynb")
        a = await c.ok("execute_code", notebook="r.ipynb", code="secret = 123\nsecret")
        assert a["status"] == "completed" and "123" in rendered_text(a)
        old = (await c.kernel_pids())
        old_pid = next(p for n, p in old.items() if n.endswith("r.ipynb"))

        st = await c.ok("restart_kernel", notebook="r.ipynb")
        assert st["state"] in ("starting", "idle"), st
        assert st["kernel_name"] == "python3"

        b = await c.ok("execute_code", notebook="r.ipynb", code="secret")
        assert b["status"] == "failed", b
        assert b["error"]["ename"] == "NameError"

        new = await c.kernel_pids()
        new_pid = next(p for n, p in new.items() if n.endswith("r.ipynb"))
        if new_pid != old_pid:
            assert await wait_gone(old_pid, 10), "the old kernel process outlived the restart"

    mcp.run(body)


@pytest.mark.timeout(120)
def test_two_notebooks_execute_concurrently(mcp):
    src = "import time\ntime.sleep(2)\n'done'"

    async def body(c):
        ids = {}
        for name in ("a.ipynb", "b.ipynb"):
            sc = await c.ok("create_notebook", notebook=name, cells=[{"cell_type": "code", "source": src}])
            ids[name] = sc["cell_ids"][0]
            await c.ok("start_kernel", notebook=name)
        results: dict[str, dict] = {}

        async def run(name: str) -> None:
            results[name] = await c.ok("execute_cell", notebook=name, cell_id=ids[name], timeout_s=30)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "a.ipynb")
            tg.start_soon(run, "b.ipynb")

        a, b = results["a.ipynb"], results["b.ipynb"]
        for r in (a, b):
            assert r["status"] == "completed", r
            assert "'done'" in rendered_text(r)
            assert r["duration_ms"] >= 1900, r
        a0, a1 = parse_time(a["started_at"]), parse_time(a["finished_at"])
        b0, b1 = parse_time(b["started_at"]), parse_time(b["finished_at"])
        assert a0 < a1 and b0 < b1
        assert a0 < b1 and b0 < a1, (
            f"executions in two notebooks did not overlap: a=[{a0}, {a1}] b=[{b0}, {b1}]")
        pids = await c.kernel_pids()
        assert len({p for n, p in pids.items() if n.endswith(("a.ipynb", "b.ipynb"))}) == 2

    mcp.run(body)


@pytest.mark.timeout(300)
def test_iopub_flood_is_complete_and_in_order(mcp):
    path = mcp.root / "flood.ipynb"
    prints = "for i in range(20000):\n    print(i, flush=True)"
    displays = "from IPython.display import display\nfor i in range(2000):\n    display(i)"

    async def body(c):
        sc = await c.ok("create_notebook", notebook="flood.ipynb",
                        cells=[{"cell_type": "code", "source": prints},
                               {"cell_type": "code", "source": displays}])
        p_id, d_id = sc["cell_ids"]
        p = await c.ok("execute_cell", notebook="flood.ipynb", cell_id=p_id, timeout_s=120)
        if p["status"] in ("pending", "running"):
            p = await c.wait_done(p["execution_id"], 120)
        assert p["status"] == "completed", p
        assert any(o.get("truncated") for o in p["outputs"]), "20,000 lines must be truncated for the model"
        d = await c.ok("execute_cell", notebook="flood.ipynb", cell_id=d_id, timeout_s=120)
        if d["status"] in ("pending", "running"):
            d = await c.wait_done(d["execution_id"], 120)
        assert d["status"] == "completed", d
        return p_id, d_id

    p_id, d_id = mcp.run(body)

    nb = validate_file(path)
    pcell, dcell = cell_by_id(nb, p_id), cell_by_id(nb, d_id)
    got = stream_text(pcell.outputs)
    want = "".join(f"{i}\n" for i in range(20000))
    if got != want:
        lines = got.splitlines()
        first_bad = next((i for i, (x, y) in enumerate(zip(lines, map(str, range(20000)))) if x != y), None)
        raise AssertionError(f"stdout on disk differs: {len(lines)} lines, first mismatch at line {first_bad}")
    assert all(o.output_type == "stream" for o in pcell.outputs)
    shown = [o for o in dcell.outputs if o.output_type == "display_data"]
    assert len(shown) == 2000, f"{len(shown)} display_data outputs on disk, want 2000"
    assert [plain_text(o) for o in shown] == [str(i) for i in range(2000)]
    assert len(dcell.outputs) == 2000


@pytest.mark.timeout(180)
@pytest.mark.parametrize("how", ["os._exit(1)", "os.kill(os.getpid(), 9)"])
def test_kernel_death_then_fresh_kernel(mcp, how):
    path = mcp.root / "die.ipynb"

    async def body(c):
        sc = await c.ok("create_notebook", notebook="die.ipynb", cells=[
            {"cell_type": "code", "source": "x = 1\nprint('set')"},
            # The pause lets 'dying' leave the kernel before it dies (IOPub is sent from a thread).
            {"cell_type": "code", "source": f"import os, time\nprint('dying', flush=True)\ntime.sleep(0.5)\n{how}"},
            {"cell_type": "code", "source": "print('alive')"},
        ])
        x_id, die_id, ok_id = sc["cell_ids"]
        a = await c.ok("execute_cell", notebook="die.ipynb", cell_id=x_id)
        assert a["status"] == "completed"
        old_pid = next(p for n, p in (await c.kernel_pids()).items() if n.endswith("die.ipynb"))

        t0 = anyio.current_time()
        _, res = await c.call("execute_cell", notebook="die.ipynb", cell_id=die_id, timeout_s=60)
        assert not res.is_error, f"a dying kernel is an execution failure, not a tool error: {text_of(res)}"
        d = res.structured_content
        if d["status"] in ("pending", "running"):
            d = await c.wait_done(d["execution_id"], 60)
        assert anyio.current_time() - t0 < 45, "kernel death must be noticed promptly (heartbeat/process exit)"
        assert d["status"] == "failed", d
        err = d.get("error") or {}
        message = " ".join(str(err.get(k, "")) for k in ("ename", "evalue")) + " " + text_of(res)
        assert err.get("ename") or err.get("evalue"), d
        assert any(w in message.lower() for w in ("died", "dead", "exit", "crash", "killed", "terminated", "lost")), message
        assert await wait_gone(old_pid, 10)

        n = await c.ok("execute_cell", notebook="die.ipynb", cell_id=ok_id, timeout_s=60)
        assert n["status"] == "completed", n
        assert stream_text(n["outputs"]) == "alive\n"
        note = n.get("kernel_note") or ""
        assert note.strip(), f"the first execution on a replacement kernel must say so: {n}"
        assert "kernel" in note.lower()
        assert n["execution_count"] == 1

        gone = await c.ok("execute_code", notebook="die.ipynb", code="x")
        assert gone["status"] == "failed" and gone["error"]["ename"] == "NameError"
        new_pid = next(p for n_, p in (await c.kernel_pids()).items() if n_.endswith("die.ipynb"))
        assert new_pid != old_pid and pid_alive(new_pid)

    mcp.run(body)
    nb = validate_file(path)
    assert "dying" in stream_text(nb.cells[1].outputs)
    assert stream_text(nb.cells[2].outputs) == "alive\n"


@pytest.mark.timeout(180)
def test_run_all_cells_order_tags_and_stop_on_error(mcp):
    path = mcp.root / "all.ipynb"
    cells = [
        ("markdown", "# Run all"),
        ("code", "log = []\nlog.append(1)"),
        ("code", ""),
        ("code", "log.append('skipped')", ["skip-execution"]),
        ("code", "log.append(2)\nraise ValueError('expected')", ["raises-exception"]),
        ("raw", "raw text"),
        ("code", "log.append(3)\nprint(log)"),
        ("code", "raise KeyError('boom')"),
        ("code", "log.append(4)"),
    ]

    # create_notebook takes no tags: the file is written beforehand, as JupyterLab would.
    nb = write_nb(path, [{"cell_type": t[0], "source": t[1], "tags": list(t[2:][0]) if len(t) > 2 else []}
                         for t in cells])
    ids = [c_.id for c_ in nb.cells]

    async def body(c):
        run = await c.ok("run_all_cells", notebook="all.ipynb", stop_on_error=True, timeout_s=60)
        queued = [e["cell_id"] for e in run["executions"]]
        assert queued == [ids[1], ids[4], ids[6], ids[7], ids[8]], run
        assert all(e["execution_id"] for e in run["executions"])
        skipped = {s["cell_id"]: s for s in run["skipped"]}
        assert set(skipped) == {ids[0], ids[2], ids[3], ids[5]}, run["skipped"]
        for sid in skipped:
            assert skipped[sid]["reason"], skipped[sid]
            assert skipped[sid]["index"] == ids.index(sid)
        assert "skip" in skipped[ids[3]]["reason"].lower()

        final = [e if e["status"] in TERMINAL else await c.wait_done(e["execution_id"], 60)
                 for e in run["executions"]]
        st = [e["status"] for e in final]
        assert st == ["completed", "failed", "completed", "failed", "cancelled"], final
        assert final[1]["error"]["ename"] == "ValueError"
        assert final[3]["error"]["ename"] == "KeyError"
        assert "[1, 2, 3]" in stream_text(final[2]["outputs"])

    mcp.run(body)
    nb = validate_file(path)
    by = {c.id: c for c in nb.cells}
    assert [by[i].execution_count for i in (ids[1], ids[4], ids[6], ids[7])] == [1, 2, 3, 4]
    assert by[ids[2]].execution_count is None and by[ids[2]].outputs == [], "empty cells are not run"
    assert by[ids[3]].execution_count is None, "skip-execution cells are not run"
    assert by[ids[8]].execution_count is None, "cells after a stop_on_error failure do not run"
    assert any(o.output_type == "error" and o.ename == "KeyError" for o in by[ids[7]].outputs)


@pytest.mark.timeout(180)
def test_cancel_pending_and_running(mcp):
    async def body(c):
        sc = await c.ok("create_notebook", notebook="cx.ipynb", cells=[
            {"cell_type": "code", "source": "import time\ntime.sleep(30)"},
            {"cell_type": "code", "source": "print('second')"},
            {"cell_type": "code", "source": "print('third')"},
        ])
        ids = sc["cell_ids"]
        run = await c.ok("run_all_cells", notebook="cx.ipynb", timeout_s=1)
        ex = run["executions"]
        assert [e["cell_id"] for e in ex] == ids
        assert ex[0]["status"] in ("pending", "running") and ex[1]["status"] == "pending", ex

        await c.ok("cancel_execution", execution_id=ex[1]["execution_id"])
        g1 = await c.ok("get_execution", execution_id=ex[1]["execution_id"])
        assert g1["status"] == "cancelled", g1
        await c.wait_running(ex[0]["execution_id"])

        t0 = anyio.current_time()
        await c.ok("cancel_execution", execution_id=ex[0]["execution_id"])
        g0 = await c.wait_done(ex[0]["execution_id"], 20)
        assert g0["status"] == "interrupted", g0
        assert anyio.current_time() - t0 < 15
        g2 = await c.wait_done(ex[2]["execution_id"], 20)
        assert g2["status"] == "cancelled", "the rest of a stop_on_error batch is cancelled"

        # An independent execution queued afterwards still runs.
        ok = await c.ok("execute_cell", notebook="cx.ipynb", cell_id=ids[2])
        assert ok["status"] == "completed" and stream_text(ok["outputs"]) == "third\n"
        return ids

    ids = mcp.run(body)
    nb = validate_file(mcp.root / "cx.ipynb")
    assert cell_by_id(nb, ids[1]).execution_count is None


@pytest.mark.timeout(120)
def test_stop_kernels_on_exit(mcp):
    async def body(c):
        await c.ok("create_notebook", notebook="k.ipynb")
        st = await c.ok("start_kernel", notebook="k.ipynb")
        pid = st["pid"]
        r = await c.ok("execute_code", notebook="k.ipynb", code="1 + 1")
        assert r["status"] == "completed"
        assert pid_alive(pid)
        return pid

    pid = mcp.run(body)
    # The session is closed: with --stop-kernels-on-exit the server stopped its kernel.
    from helpers import wait_pids_gone

    assert not wait_pids_gone({pid: None}, 10), "kernel still running after the server exited"

    # A second server on the same data dir starts cleanly (the lock was released).
    async def again(c):
        r = await c.ok("execute_code", notebook="k.ipynb", code="2 + 2")
        assert r["status"] == "completed" and "4" in rendered_text(r)

    mcp.run(again)


@pytest.mark.timeout(120)
def test_human_edit_during_execution_is_kept(mcp):
    """The server merges by cell id: its output write never erases an edit made on disk."""
    path = mcp.root / "merge.ipynb"
    nb = write_nb(path, [("code", "import time\ntime.sleep(3)\nprint('A')"), ("code", "# to be edited")])
    a_id, b_id = nb.cells[0].id, nb.cells[1].id

    async def body(c):
        r = await c.ok("execute_cell", notebook="merge.ipynb", cell_id=a_id, timeout_s=1)
        assert r["status"] in ("pending", "running"), r
        human = read_nb(path)
        cell_by_id(human, b_id).source = "# edited by a human"
        human.cells.append(nbformat.v4.new_markdown_cell("added by a human"))
        nbformat.write(human, str(path))
        done = await c.wait_done(r["execution_id"], 30)
        assert done["status"] == "completed"
        assert stream_text(done["outputs"]) == "A\n"

    mcp.run(body)
    nb = validate_file(path)
    assert cell_by_id(nb, a_id).outputs and stream_text(cell_by_id(nb, a_id).outputs) == "A\n"
    assert cell_by_id(nb, b_id).source == "# edited by a human"
    assert nb.cells[-1].source == "added by a human"
