"""Chaos rounds for durability (issue 3): kill -9 the server at a random moment while three
notebooks queue cells, restart it, let everything finish, and check that nothing accepted was
lost or run twice.

Each cell appends its sequence number to a list in the kernel (`seq`) and to a file beside the
notebook. After the restart every accepted execution must be `completed` exactly once or
`interrupted`; the kernel's `seq` and the file must hold exactly the completed numbers, in
order; `PRAGMA integrity_check` is ok; every notebook passes nbformat.validate.

Issue 8 adds round kinds (the seed picks one; CHAOS_KINDS=a,b restricts them):
- `feeders`: the rounds above;
- `batch`: a run_all_cells batch (notebook write-back) killed with the server, and half of the
  time its kernel killed too: the interrupted cell's batch rest must be cancelled, never run;
- `race`: shutdown_kernel or restart_kernel at a random moment of a batch (no kill);
- `store`: the data dir is a small tmpfs filled up while cells are queued, then freed: every
  accepted execution still ends, and the store agrees once space is back (needs root).

Used by tests/e2e/test_durability.py (CI: a few rounds of each kind) and scripts/chaos.sh
(soak: N rounds).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
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
        if exe.endswith("jupyter-mcp") or exe == str(BINARY):
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
    result: dict[str, Any] = {"status": {}, "seq": {}, "kernel_pids": {}, "why": {}}
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
                    if sc["status"] not in ("completed", "interrupted"):
                        result["why"][eid] = why(sc)
            for nb in NOTEBOOKS:
                sc = await call(s, "execute_code", notebook=nb,
                                code="import json\nprint(json.dumps(seq))", timeout_s=60)
                out = "".join(o.get("text", "") for o in sc["outputs"] if o.get("name") == "stdout")
                result["seq"][nb] = json.loads(out) if out.strip() else None
                if result["seq"][nb] is None:
                    result["why"][nb] = why(sc)
            kernels = await call(s, "list_kernels")
            for k in kernels["kernels"]:
                if k.get("pid"):
                    result["kernel_pids"][k["pid"]] = proc_start_time(k["pid"])
            for nb in NOTEBOOKS:
                await call(s, "shutdown_kernel", notebook=nb)
    return result


def why(sc: dict) -> str:
    """What a result says about why an execution did not complete (for the failure report)."""
    err = sc.get("error") or {}
    text = f"{err.get('ename', '')}: {err.get('evalue', '')}" if err else ""
    notes = sc.get("note") or sc.get("notes") or ""
    return f"status {sc.get('status')!r} {text} {notes}".strip()[:600]


def check_round(root: Path, data: Path, accepted: dict[str, list[tuple[int, str]]],
                result: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for nb, items in accepted.items():
        completed = [n for n, eid in items if result["status"].get(eid) == "completed"]
        for n, eid in items:
            st = result["status"].get(eid)
            if st not in ("completed", "interrupted"):
                problems.append(f"{nb} cell {n} ({eid}) ended {st!r}: {result['why'].get(eid, '')}")
        # The request in flight when the server died may have been committed without its
        # answer reaching us: then it runs exactly once too. So the kernel may hold one more
        # number, the next one the feeder was sending, and nothing else.
        allowed = (completed, completed + [len(items)])
        seq = result["seq"].get(nb)
        if seq is None:
            problems.append(f"{nb}: could not read seq from the kernel: {result['why'].get(nb, '')}")
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


def run_round(seed: int, workdir: Path | None = None,
              kind: str | None = None) -> tuple[list[str], dict[str, Any]]:
    """One chaos round in a fresh directory; returns (problems, stats). Kills what it started."""
    kinds = [k for k in os.environ.get("CHAOS_KINDS", ",".join(KINDS)).split(",") if k]
    kind = kind or kinds[seed % len(kinds)]
    if kind != "feeders":
        return run_fault_round(kind, seed, workdir)
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


KINDS = ("feeders", "batch", "race", "store")

BATCH_CELL = (
    "import time\n"
    "with open({log!r}, 'a') as f:\n"
    "    f.write('{n}\\n')\n"
    "time.sleep({sleep})"
)


def batch_cells(root: Path, rng: random.Random, n: int) -> list[dict]:
    log = str(root / "batch.log")
    return [{"source": BATCH_CELL.format(log=log, n=i, sleep=round(rng.uniform(0.02, 0.2), 3))}
            for i in range(n)]


def log_numbers(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


async def wait_all(s: ClientSession, ids: list[str]) -> dict[str, str]:
    status = {}
    for eid in ids:
        deadline = time.monotonic() + 120
        while True:
            sc = await call(s, "get_execution", execution_id=eid, wait_s=30)
            if sc["status"] in TERMINAL or time.monotonic() > deadline:
                break
        status[eid] = sc["status"]
    return status


LETTER = {"completed": "c", "failed": "f", "cancelled": "x", "interrupted": "i"}


def letters(states) -> str:
    """One letter per execution: c completed, f failed, x cancelled, i interrupted, ? other."""
    return "".join(LETTER.get(st, "?") for st in states)


async def stop_kernels(s: ClientSession) -> None:
    for k in (await call(s, "list_kernels"))["kernels"]:
        if k.get("pid"):
            await call(s, "shutdown_kernel", notebook=k["notebook"])


def check_batch(root: Path, ids: list[str], status: dict[str, str], allow_interrupted_completion: bool) -> list[str]:
    """Ordered batch: completed ones form a prefix... of what ran; nothing after a cell that did
    not complete may have run; the log holds exactly the completed cells, in order."""
    problems = []
    states = [status.get(e) for e in ids]
    for i, st in enumerate(states):
        if st not in TERMINAL:
            problems.append(f"batch cell {i} ended {st!r}")
    completed = [i for i, st in enumerate(states) if st == "completed"]
    lines = log_numbers(root / "batch.log")
    # A cell interrupted by the kill may have written its line before it was stopped.
    ok_logs = [completed]
    if allow_interrupted_completion:
        ok_logs += [sorted(completed + [i]) for i, st in enumerate(states) if st == "interrupted"]
    if lines not in ok_logs:
        problems.append(f"batch log {lines} != completed {completed} ({states})")
    first_bad = next((i for i, st in enumerate(states) if st != "completed"), None)
    if first_bad is not None:
        ran_after = [i for i in completed if i > first_bad]
        if ran_after:
            problems.append(f"cells {ran_after} ran after cell {first_bad} ended {states[first_bad]}")
    try:
        validate_file(root / "b.ipynb")
    except Exception as e:  # noqa: BLE001
        problems.append(f"b.ipynb: invalid notebook: {e}")
    return problems


async def batch_round(root: Path, data: Path, base: Path, rng: random.Random, stats: dict) -> list[str]:
    """run_all_cells, kill -9 the server (and half of the time its kernel) mid-batch, restart."""
    kill_kernel = rng.random() < 0.5
    stats["kill_kernel"] = kill_kernel
    async with stdio_client(server_params(root, data, base)) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            await call(s, "create_notebook", notebook="b.ipynb", cells=batch_cells(root, rng, 12))
            await call(s, "start_kernel", notebook="b.ipynb")
            batch = await call(s, "run_all_cells", notebook="b.ipynb", timeout_s=0)
            ids = [e["execution_id"] for e in batch["executions"]]
            await asyncio.sleep(rng.uniform(0.1, 1.2))
            kernels = [k["pid"] for k in (await call(s, "list_kernels"))["kernels"] if k.get("pid")]
            starts = {p: proc_start_time(p) for p in kernels}
            for pid in server_pids(data):
                os.kill(pid, signal.SIGKILL)
            if kill_kernel:
                for pid in kernels:
                    os.killpg(pid, signal.SIGKILL)
                wait_pids_gone(starts, 10)
    async with stdio_client(server_params(root, data, base)) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            status = await wait_all(s, ids)
            await stop_kernels(s)
    stats["states"] = letters(status.values())
    return check_batch(root, ids, status, allow_interrupted_completion=True)


async def race_round(root: Path, data: Path, base: Path, rng: random.Random, stats: dict) -> list[str]:
    """shutdown_kernel or restart_kernel at a random moment of a batch."""
    op = rng.choice(["shutdown_kernel", "restart_kernel"])
    stats["op"] = op
    async with stdio_client(server_params(root, data, base)) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            await call(s, "create_notebook", notebook="b.ipynb", cells=batch_cells(root, rng, 10))
            await call(s, "start_kernel", notebook="b.ipynb")
            batch = await call(s, "run_all_cells", notebook="b.ipynb", timeout_s=0)
            ids = [e["execution_id"] for e in batch["executions"]]
            await asyncio.sleep(rng.uniform(0.0, 1.0))
            await call(s, op, notebook="b.ipynb")
            status = await wait_all(s, ids)
            kernels = [k for k in (await call(s, "list_kernels"))["kernels"] if k.get("pid")]
            problems = []
            if op == "shutdown_kernel" and kernels:
                problems.append(f"a kernel runs after shutdown_kernel: {kernels}")
            if op == "restart_kernel" and len(kernels) > 1:
                problems.append(f"several kernels after restart_kernel: {kernels}")
            await stop_kernels(s)
    stats["states"] = letters(status.values())
    return problems + check_batch(root, ids, status, allow_interrupted_completion=True)


async def store_round(root: Path, data: Path, base: Path, rng: random.Random, stats: dict) -> list[str]:
    """Fill the data dir's tmpfs while cells are queued, free it, and check every accepted
    execution ended and the store agrees with what the server reported."""
    problems: list[str] = []
    ids: list[str] = []
    async with stdio_client(server_params(root, data, base)) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            await call(s, "create_notebook", notebook="s.ipynb")
            await call(s, "execute_code", notebook="s.ipynb", code="import time", timeout_s=60)
            refused = 0
            filler = data / "filler"
            fill_at = rng.randint(2, 10)
            free_at = fill_at + rng.randint(3, 12)
            for i in range(30):
                if i == fill_at:
                    fill_fs(filler)
                if i == free_at:
                    filler.unlink()
                res = await s.call_tool("execute_code", {
                    "notebook": "s.ipynb", "code": f"time.sleep({rng.uniform(0, 0.3):.3f})\nprint({i})",
                    "timeout_s": 0})
                if res.is_error:
                    refused += 1  # not accepted: the store could not commit it; fine
                else:
                    ids.append(res.structured_content["execution_id"])
            if filler.exists():
                filler.unlink()
            reported = await wait_all(s, ids)
            # One more execution after space is back: outstanding writes are recorded first.
            await call(s, "execute_code", notebook="s.ipynb", code="1", timeout_s=60)
            stats["refused"] = refused
            await stop_kernels(s)
    con = sqlite3.connect(data / "state.db")
    try:
        stored = dict(con.execute(
            f"SELECT id, status FROM executions WHERE id IN ({','.join('?' * len(ids))})", ids))
        ok = con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()
    if ok != "ok":
        problems.append(f"integrity_check: {ok}")
    for eid in ids:
        if reported.get(eid) not in TERMINAL:
            problems.append(f"{eid} never ended (reported {reported.get(eid)!r})")
        elif stored.get(eid) not in TERMINAL:
            problems.append(f"{eid} ended {reported[eid]} but the store says {stored.get(eid)!r}")
    stats["states"] = letters(reported[e] for e in ids)
    return problems


def fill_fs(path: Path) -> None:
    """Writes `path` until its file system is full (ENOSPC)."""
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 20, 4096):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass


def run_fault_round(kind: str, seed: int, workdir: Path | None) -> tuple[list[str], dict[str, Any]]:
    rng = random.Random(seed)
    base = Path(tempfile.mkdtemp(prefix=f"chaos-{kind}-{seed}-", dir=workdir))
    root, data = base / "root", base / "data"
    for d in (root, data, base / "ipython"):
        d.mkdir(parents=True)
    stats: dict[str, Any] = {"kind": kind}
    mounted = False
    try:
        if kind == "store":
            if os.geteuid() != 0:
                return [], {"kind": kind, "skipped": "needs root for a tmpfs"}
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(data)], check=True)
            mounted = True
        body = {"batch": batch_round, "race": race_round, "store": store_round}[kind]
        problems = asyncio.run(body(root, data, base, rng, stats))
        survivors = {p: s for p, s in pids_mentioning(data).items() if pid_alive(p, s)}
        if survivors and wait_pids_gone(survivors, 10):
            problems.append(f"processes left after the round: {sorted(survivors)}")
        return problems, stats
    finally:
        for _ in range(2):
            leftovers = pids_mentioning(data)
            if leftovers:
                kill_pids(leftovers)
        if mounted:
            subprocess.run(["umount", str(data)], check=False)


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
