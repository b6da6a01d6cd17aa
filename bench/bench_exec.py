"""Execution latency of jupyter-mcp against a raw jupyter_client baseline, in one run.

  (a) `1+1` through MCP stdio: execute_code against the release binary
      (official MCP Python SDK client; N timed calls after W warm-up calls)
  (b) `1+1` through jupyter_client directly: KernelManager started with
      --HistoryManager.hist_file=:memory: (as the server starts its kernels),
      BlockingKernelClient.execute, then wait for the shell reply and IOPub idle
  (c) spawn-to-initialize of the binary: process start until the MCP initialize
      response arrives (raw JSON-RPC over the pipes; median of K spawns)

Prints a table and the ratio p50(MCP) / p50(raw). Figures, never assertions.
Kernels started here are stopped by PID (process group) at the end, whatever happens.

    python bench/bench_exec.py [--n 200] [--warmup 20] [--spawns 10] [--skip-mcp] [--json out.json]
(scripts/bench.sh runs setup first and puts .venv on PATH.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import selectors
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv"
BINARY = Path(os.environ.get("JUPYTER_MCP_BIN", REPO / "target" / "release" / "jupyter-mcp"))

# PID -> /proc start time of every kernel this script learns about.
KERNELS: dict[int, int | None] = {}

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from helpers import PidTracker  # noqa: E402

_TRACKER = PidTracker()
_TRACKER.pids = KERNELS
remember = _TRACKER.remember
stop_kernels = _TRACKER.stop



# ---------------------------------------------------------------------------------- util





def pct(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    s = sorted(samples)
    k = max(0, min(len(s) - 1, int(round(q / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_MCP_")}
    env["PATH"] = f"{VENV / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    env["VIRTUAL_ENV"] = str(VENV)
    env.setdefault("RUST_LOG", "warn")
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    return env


# ------------------------------------------------------------------------- (a) via MCP


async def bench_mcp(n: int, warmup: int, workdir: Path, tag: str = "0") -> list[float]:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    root, data = workdir / f"mcp-root-{tag}", workdir / f"mcp-data-{tag}"
    root.mkdir()
    env = server_env()
    params = StdioServerParameters(
        command=str(BINARY),
        args=["serve", "--root", str(root), "--data-dir", str(data), "--stop-kernels-on-exit"],
        env={k: env[k] for k in ("PATH", "VIRTUAL_ENV", "RUST_LOG", "JUPYTER_PLATFORM_DIRS")},
    )
    samples: list[float] = []
    with open(workdir / "server.stderr", "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()

                async def call(tool: str, **args):
                    res = await session.call_tool(tool, args, read_timeout_seconds=60)
                    if res.is_error:
                        text = " ".join(getattr(c, "text", "") for c in res.content)
                        raise RuntimeError(f"{tool} failed: {text}")
                    return res.structured_content or {}

                try:
                    await call("create_notebook", notebook="bench.ipynb")
                    st = await call("start_kernel", notebook="bench.ipynb")
                    remember(st.get("pid"))
                    await session.list_tools()  # the SDK fetches output schemas once; keep it out of the timings
                    for i in range(warmup + n):
                        t0 = time.perf_counter()
                        r = await call("execute_code", notebook="bench.ipynb", code="1+1")
                        dt = time.perf_counter() - t0
                        if r.get("status") != "completed":
                            raise RuntimeError(f"execute_code returned {r}")
                        if i >= warmup:
                            samples.append(dt * 1000.0)
                finally:
                    try:
                        for k in (await call("list_kernels")).get("kernels", []):
                            remember(k.get("pid"))
                    except Exception as exc:  # report, but let cleanup go on
                        print(f"list_kernels failed during cleanup: {exc}", file=sys.stderr)
    return samples


# ------------------------------------------------------------------ (b) raw jupyter_client


def bench_raw(n: int, warmup: int) -> tuple[list[float], float]:
    from jupyter_client import KernelManager

    km = KernelManager(kernel_name="python3")
    t0 = time.perf_counter()
    km.start_kernel(extra_arguments=["--HistoryManager.hist_file=:memory:"], env=server_env(),
                    stderr=subprocess.DEVNULL)
    remember(getattr(km.provisioner, "pid", None))  # LocalProvisioner: the kernel's PID (own session)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        ready_s = time.perf_counter() - t0
        # Drain whatever wait_for_ready left on IOPub.
        while True:
            try:
                kc.get_iopub_msg(timeout=0.2)
            except Exception:
                break
        samples: list[float] = []
        for i in range(warmup + n):
            t0 = time.perf_counter()
            msg_id = kc.execute("1+1", store_history=True)
            got_reply = got_idle = False
            while not got_reply:
                reply = kc.get_shell_msg(timeout=30)
                if reply["parent_header"].get("msg_id") == msg_id:
                    got_reply = True
                    if reply["content"]["status"] != "ok":
                        raise RuntimeError(f"execute_reply {reply['content']}")
            while not got_idle:
                msg = kc.get_iopub_msg(timeout=30)
                if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                        and msg["content"]["execution_state"] == "idle"):
                    got_idle = True
            dt = time.perf_counter() - t0
            if i >= warmup:
                samples.append(dt * 1000.0)
        return samples, ready_s
    finally:
        kc.stop_channels()
        try:
            km.shutdown_kernel(now=True)
        except Exception as exc:
            print(f"raw kernel shutdown failed: {exc}", file=sys.stderr)


# ------------------------------------------------- (d) via MCP, raw JSON-RPC (no client SDK)


def bench_jsonrpc(n: int, warmup: int, workdir: Path, tag: str) -> list[float]:
    """`execute_code("1+1")` over stdio with hand-written JSON-RPC lines: the server's own cost,
    without the Python SDK's parsing and outputSchema validation."""
    root, data = workdir / f"rpc-root-{tag}", workdir / f"rpc-data-{tag}"
    root.mkdir()
    proc = subprocess.Popen([str(BINARY), "serve", "--root", str(root), "--data-dir", str(data),
                             "--stop-kernels-on-exit"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=server_env(), start_new_session=True)
    assert proc.stdin and proc.stdout
    pending = b""
    next_id = 0

    def rpc(method: str, params: dict, notify: bool = False) -> dict:
        nonlocal pending, next_id
        msg: dict = {"jsonrpc": "2.0", "method": method, "params": params}
        if not notify:
            next_id += 1
            msg["id"] = next_id
        proc.stdin.write((json.dumps(msg) + "\n").encode())  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        if notify:
            return {}
        while True:
            while b"\n" not in pending:
                chunk = os.read(proc.stdout.fileno(), 1 << 16)  # type: ignore[union-attr]
                if not chunk:
                    raise RuntimeError(f"server exited (rc={proc.poll()})")
                pending += chunk
            line, pending = pending.split(b"\n", 1)
            if line.strip():
                reply = json.loads(line)
                if reply.get("id") == next_id:
                    if "result" not in reply:
                        raise RuntimeError(f"{method} failed: {reply}")
                    return reply["result"]

    def call(tool: str, **args) -> dict:
        r = rpc("tools/call", {"name": tool, "arguments": args})
        if r.get("isError"):
            raise RuntimeError(f"{tool} failed: {r}")
        return r.get("structuredContent") or {}

    try:
        rpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                           "clientInfo": {"name": "bench", "version": "0"}})
        rpc("notifications/initialized", {}, notify=True)
        call("create_notebook", notebook="bench.ipynb")
        remember(call("start_kernel", notebook="bench.ipynb").get("pid"))
        samples: list[float] = []
        for i in range(warmup + n):
            t0 = time.perf_counter()
            r = call("execute_code", notebook="bench.ipynb", code="1+1")
            dt = time.perf_counter() - t0
            if r.get("status") != "completed":
                raise RuntimeError(f"execute_code returned {r}")
            if i >= warmup:
                samples.append(dt * 1000.0)
        return samples
    finally:
        try:
            proc.stdin.close()
            proc.wait(timeout=10)
        except Exception:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


# ----------------------------------------------------------------- (c) spawn to initialize


def spawn_to_initialize(workdir: Path, i: int) -> float:
    root, data = workdir / f"spawn-root-{i}", workdir / f"spawn-data-{i}"
    root.mkdir()
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "bench", "version": "0"}}}
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(BINARY), "serve", "--root", str(root), "--data-dir", str(data)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=server_env(), start_new_session=True)
    try:
        assert proc.stdin and proc.stdout
        proc.stdin.write((json.dumps(init) + "\n").encode())
        proc.stdin.flush()
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        buf = b""
        deadline = t0 + 30
        while True:
            if not sel.select(timeout=max(0.0, deadline - time.perf_counter())):
                raise RuntimeError("no initialize response within 30 s")
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"server exited before answering initialize (rc={proc.poll()})")
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if not line.strip():
                    continue
                msg = json.loads(line)
                if msg.get("id") == 1:
                    dt = time.perf_counter() - t0
                    if "result" not in msg:
                        raise RuntimeError(f"initialize failed: {msg}")
                    return dt * 1000.0
    finally:
        try:
            proc.stdin.close()  # type: ignore[union-attr]
            proc.wait(timeout=5)
        except Exception:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


# ------------------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="timed executions per client (default 200)")
    ap.add_argument("--warmup", type=int, default=20, help="untimed executions first (default 20)")
    ap.add_argument("--spawns", type=int, default=10, help="binary spawns for (c) (default 10)")
    ap.add_argument("--rounds", type=int, default=4, help="alternating rounds of the clients (default 4)")
    ap.add_argument("--skip-mcp", action="store_true", help="only the raw jupyter_client baseline")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    if not args.skip_mcp and not BINARY.is_file():
        print(f"{BINARY} not found: run scripts/setup.sh (or pass --skip-mcp)", file=sys.stderr)
        return 2

    rows: list[tuple[str, str, str, str]] = []
    figures: dict[str, object] = {"n": args.n, "warmup": args.warmup, "rounds": args.rounds,
                                  "cpus": os.cpu_count(), "python": platform.python_version(),
                                  "loadavg": os.getloadavg()}
    failures = 0
    raw: list[float] = []
    mcp: list[float] = []
    rpc: list[float] = []
    per_round = max(1, args.n // args.rounds)
    with tempfile.TemporaryDirectory(prefix="jmcp-bench-") as tmp:
        work = Path(tmp)
        # Alternating rounds, so that a change of machine load hits every client alike.
        for rnd in range(args.rounds):
            try:
                r, ready = bench_raw(per_round, args.warmup)
                raw += r
                figures["raw_kernel_ready_s"] = ready
            except Exception as exc:
                failures += 1
                print(f"raw jupyter_client benchmark failed: {exc!r}", file=sys.stderr)
            finally:
                stop_kernels()
            if args.skip_mcp:
                continue
            try:
                mcp += asyncio.run(bench_mcp(per_round, args.warmup, work, str(rnd)))
            except Exception as exc:
                failures += 1
                print(f"MCP benchmark failed: {exc!r} (server stderr: {work / 'server.stderr'})",
                      file=sys.stderr)
            finally:
                stop_kernels()
            try:
                rpc += bench_jsonrpc(per_round, args.warmup, work, str(rnd))
            except Exception as exc:
                failures += 1
                print(f"raw JSON-RPC benchmark failed: {exc!r}", file=sys.stderr)
            finally:
                stop_kernels()
        for name, key, xs in (("execute 1+1 via MCP stdio (execute_code, Python SDK)", "mcp_ms", mcp),
                              ("execute 1+1 via MCP stdio (execute_code, raw JSON-RPC lines)", "jsonrpc_ms", rpc),
                              ("execute 1+1, raw jupyter_client", "raw_ms", raw)):
            if xs:
                figures[key] = {"p50": statistics.median(xs), "p99": pct(xs, 99)}
                rows.append((name, f"{statistics.median(xs):.2f}", f"{pct(xs, 99):.2f}", str(len(xs))))
        if not args.skip_mcp:
            try:
                spawns = [spawn_to_initialize(work, i) for i in range(args.spawns)]
                figures["spawn_to_initialize_ms"] = {"median": statistics.median(spawns), "min": min(spawns),
                                                     "max": max(spawns)}
                rows.append((f"spawn -> initialize response (median of {len(spawns)})",
                             f"{statistics.median(spawns):.1f}", "-", str(len(spawns))))
            except Exception as exc:
                failures += 1
                print(f"spawn benchmark failed: {exc!r}", file=sys.stderr)

    print(f"\njupyter-mcp bench: {os.cpu_count()} cpus, Python {platform.python_version()}, "
          f"N={args.n} after {args.warmup} warm-up")
    w = max([len(r[0]) for r in rows] + [10])
    print(f"{'measurement':<{w}}  {'p50 ms':>9}  {'p99 ms':>9}  {'n':>5}")
    for name, p50, p99, n in rows:
        print(f"{name:<{w}}  {p50:>9}  {p99:>9}  {n:>5}")
    if mcp and raw:
        ratio = statistics.median(mcp) / statistics.median(raw)
        figures["ratio_p50_mcp_over_raw"] = ratio
        print(f"ratio p50(MCP, Python SDK) / p50(raw): {ratio:.2f}")
    if rpc and raw:
        ratio = statistics.median(rpc) / statistics.median(raw)
        figures["ratio_p50_jsonrpc_over_raw"] = ratio
        print(f"ratio p50(MCP, raw JSON-RPC) / p50(raw): {ratio:.2f}")
    print(f"load average at the start: {figures['loadavg']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        stop_kernels()
