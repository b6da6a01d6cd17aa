"""Remote kernels (issue 12): `1+1` through jupyter-mcp on a Jupyter Kernel Gateway vs a raw
WebSocket client against the same gateway, in one run; and the reconnect time after the kernel
WebSocket is dropped.

  (a) raw: POST /api/kernels, one tornado WebSocket (JSON form), execute_request `1+1`, wait
      for execute_reply and IOPub idle of that msg_id; N timed after W warm-up
  (b) jupyter-mcp `serve --gateway-url` over stdio (official MCP SDK): execute_code `1+1`
  (c) reconnect: jupyter-mcp reaches the gateway through a TCP relay; the relay cuts every
      connection, then the time until the next execute_code `1+1` answers (drop noticed,
      backoff, kernel looked up, WebSocket re-made, request sent) is measured, R times

Prints a table; figures, never assertions. The gateway (and its kernels) is stopped by PID.

    python bench/bench_gateway.py [--n 200] [--warmup 20] [--drops 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from gateway import VENV, Gateway, free_port  # noqa: E402

BINARY = Path(os.environ.get("JUPYTER_MCP_BIN", REPO / "target" / "release" / "jupyter-mcp"))


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    k = max(0, min(len(s) - 1, int(round(q / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


async def raw_client(g: Gateway, n: int, warmup: int) -> list[float]:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    status, model = g.rest("POST", "/api/kernels")
    assert status in (200, 201), status
    kid, session = model["id"], uuid.uuid4().hex
    url = f"ws://127.0.0.1:{g.port}/api/kernels/{kid}/channels?session_id={session}"
    ws = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {g.token}"}))

    async def one() -> float:
        msg_id = uuid.uuid4().hex
        msg = {"header": {"msg_id": msg_id, "msg_type": "execute_request", "session": session,
                          "username": "bench", "version": "5.3", "date": ""},
               "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
               "content": {"code": "1+1", "silent": False, "store_history": True,
                           "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}
        t0 = time.perf_counter()
        await ws.write_message(json.dumps(msg))
        reply = idle = False
        while not (reply and idle):
            m = json.loads(await ws.read_message())
            if m.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            reply |= m["header"]["msg_type"] == "execute_reply"
            idle |= m["header"]["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
        return (time.perf_counter() - t0) * 1000

    for _ in range(warmup):
        await one()
    out = [await one() for _ in range(n)]
    ws.close()
    g.rest("DELETE", f"/api/kernels/{kid}")
    return out


class Relay:
    """A TCP relay 127.0.0.1:port -> the gateway; `cut()` closes every relayed connection."""

    def __init__(self, target: int) -> None:
        self.target, self.port, self.conns = target, free_port(), []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, r, w) -> None:
        ur, uw = await asyncio.open_connection("127.0.0.1", self.target)
        self.conns += [w, uw]

        async def pipe(a, b):
            try:
                while data := await a.read(65536):
                    b.write(data)
                    await b.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                b.close()

        await asyncio.gather(pipe(r, uw), pipe(ur, w))

    def cut(self) -> None:
        for w in self.conns:
            w.close()
        self.conns.clear()


async def through_mcp(g: Gateway, n: int, warmup: int, drops: int) -> tuple[list[float], list[float]]:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    relay = Relay(g.port)
    await relay.start()
    tmp = Path(tempfile.mkdtemp(prefix="bench-gw-"))
    (tmp / "root").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_MCP_")}
    env.update(PATH=f"{VENV / 'bin'}:{os.environ.get('PATH', '')}", JUPYTER_MCP_GATEWAY_TOKEN=g.token)
    params = StdioServerParameters(command=str(BINARY), env=env, args=[
        "serve", "--root", str(tmp / "root"), "--data-dir", str(tmp / "data"),
        "--stop-kernels-on-exit", "--gateway-url", f"http://127.0.0.1:{relay.port}"])
    async with stdio_client(params) as (r, w), ClientSession(r, w) as s:
        await s.initialize()
        await s.call_tool("create_notebook", {"notebook": "b.ipynb"})

        async def one() -> float:
            t0 = time.perf_counter()
            res = await s.call_tool("execute_code", {"notebook": "b.ipynb", "code": "1+1", "timeout_s": 60})
            assert res.structured_content["status"] == "completed", res
            return (time.perf_counter() - t0) * 1000

        for _ in range(warmup):
            await one()
        lat = [await one() for _ in range(n)]
        reconnect = []
        for _ in range(drops):
            relay.cut()
            await asyncio.sleep(0.05)
            reconnect.append(await one())
        await s.call_tool("shutdown_kernel", {"notebook": "b.ipynb"})
    relay.server.close()
    return lat, reconnect


def row(name: str, xs: list[float]) -> str:
    return f"{name:<44} {statistics.median(xs):8.2f} {pct(xs, 99):8.2f} {len(xs):6d}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--drops", type=int, default=5)
    a = ap.parse_args()
    g = Gateway.start("kernelgateway", Path(tempfile.mkdtemp(prefix="bench-kg-")) / "work")
    try:
        raw = asyncio.run(raw_client(g, a.n, a.warmup))
        lat, rec = asyncio.run(through_mcp(g, a.n, a.warmup, a.drops))
    finally:
        g.stop()
    print(f"{'1+1 on Jupyter Kernel Gateway 3.0.1 (ms)':<44} {'p50':>8} {'p99':>8} {'n':>6}")
    print(row("raw WebSocket client (tornado, JSON form)", raw))
    print(row("jupyter-mcp execute_code (MCP stdio)", lat))
    print(row("execute_code right after a dropped socket", rec))
    print(f"ratio p50 jupyter-mcp / raw: {statistics.median(lat) / statistics.median(raw):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
