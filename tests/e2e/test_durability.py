"""Durability (issue 3): kernels outlive the server, running and pending executions survive a
kill -9, nothing runs twice, and the chaos rounds hold. Every test kills what it started, by PID.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import time
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from mcp import ClientSession
from mcp.client.stdio import stdio_client

import chaos
from helpers import pid_alive


@asynccontextmanager
async def server(base: Path, root: Path, data: Path, *extra: str):
    async with stdio_client(chaos.server_params(root, data, base, extra)) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            yield s


async def ok(s: ClientSession, tool: str, **args):
    return await chaos.call(s, tool, **args)


def stdout_of(sc: dict) -> str:
    return "".join(o.get("text", "") for o in sc["outputs"] if o.get("name") == "stdout")


def kill9_server(data: Path) -> None:
    pids = chaos.server_pids(data)
    assert pids, "the server process is running"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


def summary(failures: list[tuple[int, list[str]]]) -> str:
    """The first problems of each failed seed (a report of hundreds of lines gets cut in CI)."""
    lines = []
    for seed, problems in failures:
        shown = problems if len(problems) <= 5 else problems[:3] + problems[-2:]
        lines += [f"seed {seed}: {p}" for p in shown]
        if len(problems) > 5:
            lines.append(f"seed {seed}: ... {len(problems)} problems in all")
    return "\n".join(lines)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", ["batch", "race", "store"])
def test_chaos_fault_rounds(kind):
    """Issue 8 round kinds: a few rounds each in CI (CHAOS_FAULT_ROUNDS), more with chaos.sh."""
    rounds = int(os.environ.get("CHAOS_FAULT_ROUNDS", "3"))
    seed0 = int(os.environ.get("CHAOS_SEED", "1000"))
    failures = []
    for i in range(rounds):
        problems, stats = chaos.run_round(seed0 + i, kind=kind)
        print(f"{kind} round {i + 1}/{rounds} seed {seed0 + i}: {stats}")
        if problems:
            failures.append((seed0 + i, problems))
    assert not failures, summary(failures)


@pytest.mark.timeout(900)
def test_chaos_rounds():
    rounds = int(os.environ.get("CHAOS_ROUNDS", "8"))
    seed0 = int(os.environ.get("CHAOS_SEED", "1000"))
    failures = []
    for i in range(rounds):
        problems, stats = chaos.run_round(seed0 + i, kind="feeders")
        print(f"round {i + 1}/{rounds} seed {seed0 + i}: {stats}")
        if problems:
            failures.append((seed0 + i, problems))
    assert not failures, summary(failures)


@pytest.mark.timeout(180)
def test_kernel_survives_a_server_restart(dirs):
    base, root, data = dirs

    async def body():
        async with server(base, root, data) as s:
            await ok(s, "create_notebook", notebook="k.ipynb")
            await ok(s, "execute_code", notebook="k.ipynb", code="x = 41", timeout_s=60)
            pid = (await ok(s, "list_kernels"))["kernels"][0]["pid"]
        # The server exited (stdin closed); the kernel keeps running.
        assert pid_alive(pid)
        async with server(base, root, data) as s:
            kernels = (await ok(s, "list_kernels"))["kernels"]
            assert [k["pid"] for k in kernels] == [pid], kernels
            sc = await ok(s, "execute_code", notebook="k.ipynb", code="print(x + 1)", timeout_s=60)
            assert sc["status"] == "completed", sc
            assert stdout_of(sc).strip() == "42"
            await ok(s, "shutdown_kernel", notebook="k.ipynb")

    asyncio.run(body())


@pytest.mark.timeout(180)
def test_kernel_killed_while_the_server_is_down(dirs):
    base, root, data = dirs

    async def body():
        async with server(base, root, data) as s:
            await ok(s, "create_notebook", notebook="k.ipynb")
            await ok(s, "execute_code", notebook="k.ipynb", code="x = 1", timeout_s=60)
            pid = (await ok(s, "list_kernels"))["kernels"][0]["pid"]
        os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        async with server(base, root, data) as s:
            assert (await ok(s, "list_kernels"))["kernels"] == []
            sc = await ok(s, "execute_code", notebook="k.ipynb", code="print(x)", timeout_s=60)
            assert sc["status"] == "failed" and sc["error"]["ename"] == "NameError", sc
            note = sc.get("kernel_note") or ""
            assert "died" in note and "fresh kernel" in note, note
            await ok(s, "shutdown_kernel", notebook="k.ipynb")

    asyncio.run(body())


@pytest.mark.timeout(180)
def test_a_reused_pid_is_not_taken_for_our_kernel(dirs):
    base, root, data = dirs
    impostor = subprocess.Popen(["sleep", "120"], start_new_session=True)
    try:
        async def body():
            async with server(base, root, data) as s:
                await ok(s, "create_notebook", notebook="k.ipynb")
                await ok(s, "execute_code", notebook="k.ipynb", code="x = 1", timeout_s=60)
                pid = (await ok(s, "list_kernels"))["kernels"][0]["pid"]
            os.killpg(pid, signal.SIGKILL)
            # Pretend the kernel's PID now belongs to another process (same PID, other start).
            con = sqlite3.connect(data / "state.db")
            con.execute("UPDATE kernel_sessions SET pid = ? WHERE pid = ?", (impostor.pid, pid))
            con.commit()
            con.close()
            async with server(base, root, data) as s:
                assert (await ok(s, "list_kernels"))["kernels"] == [], "not reattached"
                sc = await ok(s, "execute_code", notebook="k.ipynb", code="print(x)", timeout_s=60)
                assert sc["status"] == "failed", sc
                assert "another process" in (sc.get("kernel_note") or ""), sc
                await ok(s, "shutdown_kernel", notebook="k.ipynb")
            assert impostor.poll() is None, "the other process was left alone"

        asyncio.run(body())
    finally:
        impostor.kill()
        impostor.wait()


@pytest.mark.timeout(180)
def test_a_cell_running_during_kill9_is_followed_to_its_end(dirs):
    base, root, data = dirs

    async def body():
        async with server(base, root, data) as s:
            await ok(s, "create_notebook", notebook="r.ipynb",
                     cells=[{"source": "import time\nprint('before', flush=True)\ntime.sleep(3)\ny = 5\nprint('after')"}])
            await ok(s, "start_kernel", notebook="r.ipynb")
            nb = await ok(s, "read_notebook", notebook="r.ipynb")
            cell = nb["cells"][0]["id"]
            sc = await ok(s, "execute_cell", notebook="r.ipynb", cell_id=cell, timeout_s=0.8)
            assert sc["status"] == "running", sc
            eid = sc["execution_id"]
            queued = await ok(s, "execute_code", notebook="r.ipynb", code="z = y * 2", timeout_s=0)
            kill9_server(data)
        async with server(base, root, data) as s:
            done = await ok(s, "get_execution", execution_id=eid, wait_s=30)
            assert done["status"] == "completed", done
            later = await ok(s, "get_execution", execution_id=queued["execution_id"], wait_s=30)
            assert later["status"] == "completed", later
            sc = await ok(s, "execute_code", notebook="r.ipynb", code="print(y, z)", timeout_s=30)
            assert stdout_of(sc).strip() == "5 10", sc
            await ok(s, "shutdown_kernel", notebook="r.ipynb")
        nb = chaos.validate_file(root / "r.ipynb")
        assert nb.cells[0].execution_count is not None

    asyncio.run(body())


@pytest.mark.timeout(120)
def test_input_prompt_is_shown_and_answered(dirs):
    base, root, data = dirs

    async def body():
        async with server(base, root, data) as s:
            await ok(s, "create_notebook", notebook="i.ipynb")
            await ok(s, "start_kernel", notebook="i.ipynb")  # a slow kernel start is not the point
            sc = await ok(s, "execute_code", notebook="i.ipynb",
                          code="name = input('who are you? ')\nprint('hello', name)", timeout_s=5)
            assert sc["status"] == "running", sc
            assert sc.get("input_prompt") == "who are you? ", sc
            await ok(s, "send_input", notebook="i.ipynb", text="ada")
            done = await ok(s, "get_execution", execution_id=sc["execution_id"], wait_s=20)
            assert done["status"] == "completed", done
            assert "hello ada" in stdout_of(done)
            await ok(s, "shutdown_kernel", notebook="i.ipynb")

    asyncio.run(body())


@pytest.mark.timeout(120)
def test_max_cell_seconds_interrupts_a_runaway_cell_and_says_so(dirs):
    base, root, data = dirs

    async def body():
        async with server(base, root, data, "--max-cell-seconds", "2") as s:
            await ok(s, "create_notebook", notebook="m.ipynb")
            sc = await ok(s, "execute_code", notebook="m.ipynb",
                          code="import time\ntime.sleep(60)", timeout_s=30)
            assert sc["status"] == "interrupted", sc
            assert "--max-cell-seconds" in (sc.get("kernel_note") or ""), sc
            again = await ok(s, "execute_code", notebook="m.ipynb", code="print(1)", timeout_s=30)
            assert again["status"] == "completed", "the kernel keeps serving"
            await ok(s, "shutdown_kernel", notebook="m.ipynb")

    asyncio.run(body())


@pytest.mark.timeout(120)
def test_an_unanswered_input_prompt_does_not_hang_the_kernel(dirs):
    base, root, data = dirs

    async def body():
        async with server(base, root, data, "--input-timeout", "2") as s:
            await ok(s, "create_notebook", notebook="q.ipynb")
            sc = await ok(s, "execute_code", notebook="q.ipynb", code="x = input('? ')", timeout_s=30)
            assert sc["status"] == "interrupted", sc
            assert "input()" in (sc.get("kernel_note") or ""), sc
            await ok(s, "shutdown_kernel", notebook="q.ipynb")

    asyncio.run(body())


@pytest.mark.timeout(120)
def test_progress_notifications_while_a_cell_runs(dirs):
    base, root, data = dirs
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async def body():
        async with server(base, root, data) as s:
            await ok(s, "create_notebook", notebook="p.ipynb")
            res = await s.call_tool(
                "execute_code",
                {"notebook": "p.ipynb", "code": "import time\nprint('working', flush=True)\ntime.sleep(3.5)", "timeout_s": 30},
                progress_callback=on_progress,
            )
            assert not res.is_error and res.structured_content["status"] == "completed"
            await ok(s, "shutdown_kernel", notebook="p.ipynb")

    asyncio.run(body())
    assert len(seen) >= 2, seen
    assert all(b[0] > a[0] for a, b in zip(seen, seen[1:])), "progress increases"
    assert any("working" in (m or "") for _, _, m in seen), seen
