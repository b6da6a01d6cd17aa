"""Daemon mode figures (issue 10 "Figures"), in one run, printed, never asserted:

1. 20 concurrent MCP sessions over Streamable HTTP (official Python SDK), each on its own
   notebook, executing `1+1` in a loop: aggregate executions/s, per-call p50/p99; the same
   work by 20 raw `jupyter_client` clients (BlockingKernelClient, one thread each) on 20
   kernels; the ratio. Both client sets run in this one Python process.
2. A fast session's p50/p99 of `1+1` while another session's cell prints 20,000 lines,
   against the same session unloaded.
3. `/events`: 100 WebSocket clients, 10 of which never read (small receive window). A cell
   prints lines carrying `time.time_ns()`; the delay of a line is its arrival at a reading
   client minus that kernel-side time (so it includes the kernel's IOPub send and the ZMQ
   hop: an upper bound on IOPub-arrival-to-delivery). Paced phase: 300 lines 10 ms apart;
   flood phase: 20,000 lines back to back. `lagged` drops at the fast clients, and the
   daemon's `events_dropped_total` / `events_disconnected_total`, are counted.
4. Daemon RSS with 10 kernels and 50 open sessions.
5. First `execute_code` in a new notebook with `--kernel-pool 1` against without.

    scripts/bench.sh daemon [--sessions 20] [--n 30] [--rounds 5]

Everything started is stopped by PID (kernels found through the bench's own data dirs).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "e2e"))

import chaos  # noqa: E402
from daemon import Daemon, cleanup  # noqa: E402
from helpers import kill_pids, proc_start_time  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def metric(d: Daemon, name: str) -> float:
    for line in d.get("/metrics", headers=d.auth()).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")


def new_daemon(base: Path, name: str, extra: tuple[str, ...] = ()) -> Daemon:
    root, data = base / f"root-{name}", base / f"data-{name}"
    root.mkdir()
    data.mkdir()
    return Daemon(base, root, data, extra=("--stop-kernels-on-exit", *extra))


def stop(d: Daemon) -> None:
    d.stop()
    cleanup(d.data)


async def call(s, tool: str, **args) -> dict:
    r = await s.call_tool(tool, args, read_timeout_seconds=300)
    if r.is_error:
        raise RuntimeError(f"{tool}: {r.content[0].text if r.content else r}")
    return r.structured_content or {}


# ------------------------------------------------------------------ 1. 20 sessions vs raw

async def http_sessions(d: Daemon, sessions: int, n: int) -> tuple[list[float], float]:
    lat: list[float] = []
    ready = asyncio.Barrier(sessions + 1)
    done = asyncio.Barrier(sessions + 1)

    async def one(i: int) -> None:
        async with d.session() as s:
            nb = f"s{i}.ipynb"
            await call(s, "create_notebook", notebook=nb)
            await call(s, "execute_code", notebook=nb, code="0")  # the kernel starts
            await ready.wait()
            for _ in range(n):
                t = time.perf_counter()
                r = await call(s, "execute_code", notebook=nb, code="1+1")
                lat.append(time.perf_counter() - t)
                assert r["status"] == "completed", r
            await done.wait()

    tasks = [asyncio.create_task(one(i)) for i in range(sessions)]
    await ready.wait()
    t0 = time.perf_counter()
    await done.wait()
    elapsed = time.perf_counter() - t0
    await asyncio.gather(*tasks)
    return lat, elapsed


def raw_clients(base: Path, clients: int, n: int) -> tuple[list[float], float]:
    from jupyter_client import KernelManager

    env = chaos.server_env(base)
    kms, pids = [], []
    try:
        for _ in range(clients):
            km = KernelManager(kernel_name="python3")
            km.start_kernel(extra_arguments=["--HistoryManager.hist_file=:memory:"], env=env,
                            stderr=subprocess.DEVNULL)
            pid = getattr(km.provisioner, "pid", None)
            if pid:
                pids.append((pid, proc_start_time(pid)))
            kms.append(km)
        kcs = []
        for km in kms:
            kc = km.client()
            kc.start_channels()
            kc.wait_for_ready(timeout=120)
            kcs.append(kc)
        lat: list[float] = []
        lock = threading.Lock()
        start = threading.Barrier(clients + 1)

        def loop(kc) -> None:
            start.wait()
            for _ in range(n):
                t = time.perf_counter()
                msg_id = kc.execute("1+1")
                while kc.get_shell_msg(timeout=60)["parent_header"].get("msg_id") != msg_id:
                    pass
                while True:
                    m = kc.get_iopub_msg(timeout=60)
                    if (m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "status"
                            and m["content"]["execution_state"] == "idle"):
                        break
                with lock:
                    lat.append(time.perf_counter() - t)

        threads = [threading.Thread(target=loop, args=(kc,)) for kc in kcs]
        for t in threads:
            t.start()
        start.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        for kc in kcs:
            kc.stop_channels()
        return lat, elapsed
    finally:
        for km in kms:
            try:
                km.shutdown_kernel(now=True)
            except Exception:  # noqa: BLE001 - killed by PID below anyway
                pass
        kill_pids(dict(pids))


# ------------------------------------------------------------------ 2. flood neighbour

async def fast_under_flood(d: Daemon, n: int) -> tuple[list[float], list[float]]:
    async with d.session() as fast, d.session() as flood:
        await call(fast, "create_notebook", notebook="fast.ipynb")
        await call(flood, "create_notebook", notebook="flood.ipynb")
        await call(fast, "execute_code", notebook="fast.ipynb", code="0")
        await call(flood, "execute_code", notebook="flood.ipynb", code="0")
        unloaded = []
        for _ in range(n):
            t = time.perf_counter()
            await call(fast, "execute_code", notebook="fast.ipynb", code="1+1")
            unloaded.append(time.perf_counter() - t)
        code = "for i in range(20000):\n    print(f'{i:05d} ' + 'x' * 100, flush=True)"
        flooding = asyncio.create_task(call(flood, "execute_code", notebook="flood.ipynb",
                                            code=code, timeout_s=300))
        await asyncio.sleep(0.2)  # the flood is under way
        loaded = []
        while not flooding.done() or len(loaded) < 10:
            t = time.perf_counter()
            await call(fast, "execute_code", notebook="fast.ipynb", code="1+1")
            loaded.append(time.perf_counter() - t)
        await flooding
        return unloaded, loaded


# ------------------------------------------------------------------ 3. /events fan-out

def ws_open(d: Daemon, rcvbuf: int | None = None) -> tuple[socket.socket, bytes]:
    u = urlsplit(d.base_url)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect((u.hostname, u.port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /events?notebook=ev.ipynb HTTP/1.1\r\nHost: {u.netloc}\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               f"Authorization: Bearer {d.token}\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    head, _, rest = buf.partition(b"\r\n\r\n")
    if b" 101 " not in head.split(b"\r\n")[0]:
        raise RuntimeError(head)
    return s, rest


class FastClient:
    """Reads frames in its own thread; records (kernel time, arrival time) of each line."""

    def __init__(self, d: Daemon) -> None:
        self.sock, self.buf = ws_open(d)
        self.delays: dict[str, list[float]] = {"paced": [], "flood": []}
        self.lagged = 0
        self.completed = 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def need(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def run(self) -> None:
        try:
            while True:
                b0, b1 = self.need(2)
                n = b1 & 0x7F
                if n == 126:
                    n = int.from_bytes(self.need(2), "big")
                elif n == 127:
                    n = int.from_bytes(self.need(8), "big")
                payload = self.need(n)
                now = time.time_ns()
                if b0 & 0x0F == 8:
                    break
                m = json.loads(payload)
                if m["type"] == "lagged":
                    self.lagged += m["dropped"]
                elif m["type"] == "execution" and m["status"] == "completed":
                    self.completed += 1
                elif m["type"] == "output":
                    for line in (m["output"].get("text") or "").splitlines():
                        phase, _, ns = line.partition(" ")
                        if phase in self.delays and ns.isdigit():
                            self.delays[phase].append((now - int(ns)) / 1e6)
        except (EOFError, OSError):
            pass

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(10)


async def events_fanout(d: Daemon, clients: int, stalled: int) -> dict:
    dropped0 = metric(d, "events_dropped_total")
    disc0 = metric(d, "events_disconnected_total")
    stalls = [ws_open(d, rcvbuf=4096)[0] for _ in range(stalled)]
    fast = [FastClient(d) for _ in range(clients - stalled)]
    paced = ("import time\nfor i in range(300):\n"
             "    print('paced', time.time_ns(), flush=True)\n    time.sleep(0.01)")
    flood = ("import time\nfor i in range(20000):\n"
             "    print('flood', time.time_ns(), flush=True)")
    try:
        async with d.session() as s:
            await call(s, "create_notebook", notebook="ev.ipynb")
            await call(s, "execute_code", notebook="ev.ipynb", code="0")
            target = len(fast) * 3  # `0`, paced, flood: each fast client sees 3 completions
            await call(s, "execute_code", notebook="ev.ipynb", code=paced, timeout_s=300)
            await call(s, "execute_code", notebook="ev.ipynb", code=flood, timeout_s=300)
        deadline = time.monotonic() + 60
        while sum(c.completed for c in fast) < target and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        out = {
            "paced": [x for c in fast for x in c.delays["paced"]],
            "flood": [x for c in fast for x in c.delays["flood"]],
            "paced_per_client": statistics.median(len(c.delays["paced"]) for c in fast),
            "flood_per_client": statistics.median(len(c.delays["flood"]) for c in fast),
            "lagged_fast": sum(c.lagged for c in fast),
            "fast_lagging": sum(1 for c in fast if c.lagged),
            "dropped_total": metric(d, "events_dropped_total") - dropped0,
            "disconnected": metric(d, "events_disconnected_total") - disc0,
        }
        return out
    finally:
        for c in fast:
            c.close()
        for s in stalls:
            s.close()


# ------------------------------------------------------------------ 4. RSS, 5. pool

async def rss_with(d: Daemon, kernels: int, sessions: int) -> tuple[float, float]:
    hold = asyncio.Event()
    ready = asyncio.Barrier(sessions + 1)

    async def one(i: int) -> None:
        async with d.session() as s:
            if i < kernels:
                await call(s, "create_notebook", notebook=f"r{i}.ipynb")
                await call(s, "execute_code", notebook=f"r{i}.ipynb", code="1+1")
            await ready.wait()
            await hold.wait()

    tasks = [asyncio.create_task(one(i)) for i in range(sessions)]
    await ready.wait()
    await asyncio.sleep(1)
    rss = rss_mib(d.proc.pid)
    sessions_seen = metric(d, "mcp_sessions")
    hold.set()
    await asyncio.gather(*tasks)
    return rss, sessions_seen


async def first_execs(d: Daemon, pool: int, rounds: int) -> list[float]:
    times = []
    async with d.session() as s:
        for i in range(rounds):
            deadline = time.monotonic() + 120
            while pool and (await call(s, "server_status"))["pool"]["ready"] < pool:
                if time.monotonic() > deadline:
                    raise RuntimeError("the pool kernel did not become ready")
                await asyncio.sleep(0.05)
            await call(s, "create_notebook", notebook=f"p{i}.ipynb")
            t = time.perf_counter()
            r = await call(s, "execute_code", notebook=f"p{i}.ipynb", code="1 + 1")
            times.append(time.perf_counter() - t)
            assert r["status"] == "completed", r
            await call(s, "shutdown_kernel", notebook=f"p{i}.ipynb")
    return times


def ms(xs: list[float]) -> str:
    return f"p50 {pct(xs, 0.5) * 1000:7.1f} ms  p99 {pct(xs, 0.99) * 1000:7.1f} ms  (n={len(xs)})"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--n", type=int, default=30, help="1+1 per session")
    ap.add_argument("--rounds", type=int, default=5, help="first executions per pool setting")
    a = ap.parse_args()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="jmcp-bench-daemon-") as tmp:
        base = Path(tmp)
        (base / "ipython").mkdir()

        d = new_daemon(base, "sessions")
        try:
            lat, el = asyncio.run(http_sessions(d, a.sessions, a.n))
        finally:
            stop(d)
        raw, rel = raw_clients(base, a.sessions, a.n)
        mcp_rate, raw_rate = len(lat) / el, len(raw) / rel
        print(f"\n1. {a.sessions} concurrent clients x {a.n} `1+1`, each on its own kernel")
        print(f"   MCP HTTP sessions:     {mcp_rate:6.1f} executions/s  {ms(lat)}")
        print(f"   raw jupyter_client:    {raw_rate:6.1f} executions/s  {ms(raw)}")
        print(f"   ratio MCP/raw: throughput {mcp_rate / raw_rate:.2f}, "
              f"p50 {pct(lat, .5) / pct(raw, .5):.2f}, p99 {pct(lat, .99) / pct(raw, .99):.2f}")

        d = new_daemon(base, "flood")
        try:
            unloaded, loaded = asyncio.run(fast_under_flood(d, a.n * 2))
        finally:
            stop(d)
        print("\n2. a fast session's `1+1` while another session prints 20,000 lines")
        print(f"   unloaded:              {ms(unloaded)}")
        print(f"   during the flood:      {ms(loaded)}")

        d = new_daemon(base, "events")
        try:
            ev = asyncio.run(events_fanout(d, 100, 10))
        finally:
            stop(d)
        print("\n3. /events, 100 WebSocket clients of which 10 never read (kernel print -> delivery)")
        print(f"   paced (300 lines, 10 ms apart):  {ms([x / 1000 for x in ev['paced']])}, "
              f"lines per fast client {ev['paced_per_client']:.0f}")
        print(f"   flood (20,000 lines):            {ms([x / 1000 for x in ev['flood']])}, "
              f"lines per fast client {ev['flood_per_client']:.0f}")
        print(f"   fast clients told `lagged`: {ev['fast_lagging']} (events dropped for them: "
              f"{ev['lagged_fast']}); daemon events_dropped_total +{ev['dropped_total']:.0f}, "
              f"events_disconnected_total +{ev['disconnected']:.0f}")

        d = new_daemon(base, "rss")
        try:
            rss, seen = asyncio.run(rss_with(d, 10, 50))
        finally:
            stop(d)
        print(f"\n4. daemon RSS with 10 kernels and {seen:.0f} sessions: {rss:.1f} MiB")

        cold_d = new_daemon(base, "cold")
        try:
            cold = asyncio.run(first_execs(cold_d, 0, a.rounds))
        finally:
            stop(cold_d)
        warm_d = new_daemon(base, "warm", ("--kernel-pool", "1"))
        try:
            warm = asyncio.run(first_execs(warm_d, 1, a.rounds))
        finally:
            stop(warm_d)
        print("\n5. first execute_code in a new notebook (call to answer)")
        print(f"   without a pool:        p50 {statistics.median(cold) * 1000:7.1f} ms  "
              f"min {min(cold) * 1000:.1f}  max {max(cold) * 1000:.1f}")
        print(f"   --kernel-pool 1:       p50 {statistics.median(warm) * 1000:7.1f} ms  "
              f"min {min(warm) * 1000:.1f}  max {max(warm) * 1000:.1f}")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
