"""Chaos rounds for durability (issue 3): kill -9 the server at a random moment while three
notebooks queue cells, restart it, let everything finish, and check that nothing accepted was
lost or run twice.

Each cell appends its sequence number to a list in the kernel (`seq`) and to a file beside the
notebook. After the restart every accepted execution must be `completed` exactly once or
`interrupted`; the kernel's `seq` and the file must hold exactly the completed numbers, in
order; `PRAGMA integrity_check` is ok; every notebook passes nbformat.validate.

Used by tests/e2e/test_durability.py (CI: 20 rounds) and scripts/chaos.sh (soak: N rounds).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from helpers import (  # noqa: E402
    kill_pids, pid_alive, pids_mentioning, proc_start_time, validate_file, wait_pids_gone,
)

REPO = HERE.parents[1]
VENV = REPO / ".venv"
BINARY = Path(os.environ.get("JUPYTER_MCP_BIN", REPO / "target" / "release" / "jupyter-mcp"))
NOTEBOOKS = ("a.ipynb", "b.ipynb", "c.ipynb")
TERMINAL = {"completed", "failed", "cancelled", "interrupted"}


def server_env(base: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_MCP_")}
    env["PATH"] = f"{VENV / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    env["VIRTUAL_ENV"] = str(VENV)
    env["IPYTHONDIR"] = str(base / "ipython")
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    return env


def server_params(root: Path, data: Path, base: Path, extra: tuple[str, ...] = ()) -> StdioServerParameters:
    return StdioServerParameters(
        command=str(BINARY),
        args=["serve", "--root", str(root), "--data-dir", str(data), *extra],
        env=server_env(base),
    )


def server_pids(data: Path) -> list[int]:
    """The jupyter-mcp server process(es) of this data dir (kernels mention it too)."""
    out = []
    for pid in pids_mentioning(data):
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            continue
        if exe.endswith("jupyter-mcp"):
            out.append(pid)
    return out


async def call(session: ClientSession, tool: str, **args: Any) -> dict:
    res = await session.call_tool(tool, args)
    if res.is_error:
        raise RuntimeError(f"{tool} failed: {res.content[0].text if res.content else res}")
    return res.structured_content or {}


CELL = (
    "seq.append({n})\n"
    "with open('{log}', 'a') as f:\n"
    "    f.write('{n}\\n')\n"
    "time.sleep({sleep})"
)


async def phase_one(root: Path, data: Path, base: Path, rng: random.Random,
                    accepted: dict[str, list[tuple[int, str]]], kill_after: float) -> None:
    """Start a server, set up kernels, queue cells from 3 notebooks until killed."""
    async with stdio_client(server_params(root, data, base)) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            for nb in NOTEBOOKS:
                if not (root / nb).exists():
                    await call(s, "create_notebook", notebook=nb)
                    await call(s, "execute_code", notebook=nb, code="import time\nseq = []", timeout_s=60)

            async def feeder(nb: str) -> None:
                n = len(accepted[nb])
                while True:
                    code = CELL.format(n=n, log=nb + ".log", sleep=round(rng.uniform(0.0, 0.05), 3))
                    sc = await call(s, "execute_code", notebook=nb, code=code, timeout_s=0)
                    accepted[nb].append((n, sc["execution_id"]))
                    n += 1
                    await asyncio.sleep(rng.uniform(0.0, 0.02))

            tasks = [asyncio.create_task(feeder(nb)) for nb in NOTEBOOKS]
            await asyncio.sleep(kill_after)
            for pid in server_pids(data):
                os.kill(pid, signal.SIGKILL)
            # The feeders fail once the server is gone; that ends the session.
            await asyncio.gather(*tasks, return_exceptions=True)


async def phase_two(root: Path, data: Path, base: Path,
                    accepted: dict[str, list[tuple[int, str]]]) -> dict[str, Any]:
    """Restart, wait for every accepted execution, and collect what the kernels hold."""
    result: dict[str, Any] = {"status": {}, "seq": {}, "kernel_pids": {}}
    async with stdio_client(server_params(root, data, base)) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            for nb, items in accepted.items():
                for n, eid in items:
                    deadline = time.monotonic() + 120
                    while True:
                        sc = await call(s, "get_execution", execution_id=eid, wait_s=30)
                        if sc["status"] in TERMINAL or time.monotonic() > deadline:
                            break
                    result["status"][eid] = sc["status"]
            for nb in NOTEBOOKS:
                sc = await call(s, "execute_code", notebook=nb,
                                code="import json\nprint(json.dumps(seq))", timeout_s=60)
                out = "".join(o.get("text", "") for o in sc["outputs"] if o.get("name") == "stdout")
                result["seq"][nb] = json.loads(out) if out.strip() else None
            kernels = await call(s, "list_kernels")
            for k in kernels["kernels"]:
                if k.get("pid"):
                    result["kernel_pids"][k["pid"]] = proc_start_time(k["pid"])
            for nb in NOTEBOOKS:
                await call(s, "shutdown_kernel", notebook=nb)
    return result


def check_round(root: Path, data: Path, accepted: dict[str, list[tuple[int, str]]],
                result: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for nb, items in accepted.items():
        completed = [n for n, eid in items if result["status"].get(eid) == "completed"]
        for n, eid in items:
            st = result["status"].get(eid)
            if st not in ("completed", "interrupted"):
                problems.append(f"{nb} cell {n} ({eid}) ended {st!r}")
        # The request in flight when the server died may have been committed without its
        # answer reaching us: then it runs exactly once too. So the kernel may hold one more
        # number, the next one the feeder was sending, and nothing else.
        allowed = (completed, completed + [len(items)])
        seq = result["seq"].get(nb)
        if seq is None:
            problems.append(f"{nb}: could not read seq from the kernel")
        elif seq not in allowed:
            problems.append(f"{nb}: kernel seq {seq} != completed {completed}")
        log = root / (nb + ".log")
        lines = [int(x) for x in log.read_text().split()] if log.exists() else []
        if lines not in allowed or (seq is not None and lines != seq):
            problems.append(f"{nb}: log file {lines} != completed {completed} / kernel {seq}")
        try:
            validate_file(root / nb)
        except Exception as e:  # noqa: BLE001
            problems.append(f"{nb}: invalid notebook: {e}")
    con = sqlite3.connect(data / "state.db")
    try:
        ok = con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()
    if ok != "ok":
        problems.append(f"integrity_check: {ok}")
    return problems


def run_round(seed: int, workdir: Path | None = None) -> tuple[list[str], dict[str, Any]]:
    """One chaos round in a fresh directory; returns (problems, stats). Kills what it started."""
    rng = random.Random(seed)
    base = Path(tempfile.mkdtemp(prefix=f"chaos-{seed}-", dir=workdir))
    root, data = base / "root", base / "data"
    for d in (root, data, base / "ipython"):
        d.mkdir(parents=True)
    accepted: dict[str, list[tuple[int, str]]] = {nb: [] for nb in NOTEBOOKS}
    kill_after = rng.uniform(0.3, 2.5)
    try:
        try:
            asyncio.run(phase_one(root, data, base, rng, accepted, kill_after))
        except BaseException as e:  # noqa: BLE001 - the server was killed under the client
            if isinstance(e, KeyboardInterrupt):
                raise
        result = asyncio.run(phase_two(root, data, base, accepted))
        problems = check_round(root, data, accepted, result)
        # The restarted server shut every kernel down and exited: nothing may be left.
        survivors = {p: s for p, s in pids_mentioning(data).items() if pid_alive(p, s)}
        if survivors and wait_pids_gone(survivors, 10):
            problems.append(f"processes left after the round: {sorted(survivors)}")
        stats = {
            "accepted": sum(len(v) for v in accepted.values()),
            "completed": sum(1 for s in result["status"].values() if s == "completed"),
            "interrupted": sum(1 for s in result["status"].values() if s == "interrupted"),
            "kill_after_s": round(kill_after, 2),
        }
        return problems, stats
    finally:
        # Twice: a server that was still exiting could have started one more kernel.
        for _ in range(2):
            leftovers = pids_mentioning(data)
            if leftovers:
                kill_pids(leftovers)



def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    seed0 = int(os.environ.get("CHAOS_SEED", time.time()))
    failed = 0
    for i in range(rounds):
        problems, stats = run_round(seed0 + i)
        status = "ok" if not problems else "FAIL"
        print(f"round {i + 1}/{rounds} seed {seed0 + i}: {status} {stats}", flush=True)
        for p in problems:
            print(f"  - {p}", flush=True)
        failed += bool(problems)
    print(f"{rounds - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
