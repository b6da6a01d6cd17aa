"""A `jupyter-mcp serve --transport http` daemon for the end-to-end tests (test_daemon_http.py,
test_connect.py): started on port 0, found through DATA_DIR/daemon.json, stopped by PID.
Also a few raw-HTTP helpers (httpx2, the HTTP client of the MCP SDK) and an SDK session
factory over Streamable HTTP."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx2

import chaos
from helpers import kill_pids, pid_alive, pids_mentioning, proc_start_time

PROTOCOL = "2025-11-25"


def wait_for(cond, timeout: float, what: str, step: float = 0.05):
    """Polls `cond()` until it returns something truthy; fails naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def read_daemon_json(data: Path) -> dict | None:
    try:
        return json.loads((data / "daemon.json").read_text())
    except (FileNotFoundError, ValueError):
        return None


class Daemon:
    """One daemon process on `data` (its own PID; never found by name)."""

    def __init__(self, base: Path, root: Path, data: Path, extra: tuple[str, ...] = ()) -> None:
        self.base_dir, self.root, self.data = base, root, data
        self.stderr_path = base / f"daemon-{time.monotonic_ns()}.stderr"
        self.proc = subprocess.Popen(
            [str(chaos.BINARY), "serve", "--transport", "http", "--bind", "127.0.0.1:0",
             "--root", str(root), "--data-dir", str(data), *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.stderr_path, "ab"), env=chaos.server_env(base),
        )
        self.start_time = proc_start_time(self.proc.pid)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}: {self.stderr()}")
            info = read_daemon_json(data)
            return info if info and info.get("pid") == self.proc.pid else None

        info = wait_for(up, 30, "daemon.json")
        self.url: str = info["url"]
        self.base_url = self.url.removesuffix("/mcp")
        self.token = (data / "token").read_text().strip()
        wait_for(lambda: self.get("/health/ready").status_code == 200, 60, "/health/ready")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-3000:]

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, headers: dict[str, str] | None = None) -> httpx2.Response:
        return httpx2.get(self.base_url + path, headers=headers or {}, timeout=30)

    def post(self, body: Any, headers: dict[str, str] | None = None, raw: bytes | None = None,
             auth: bool = True) -> httpx2.Response:
        h = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if auth:
            h.update(self.auth())
        h.update(headers or {})
        content = raw if raw is not None else json.dumps(body).encode()
        return httpx2.post(self.url, content=content, headers=h, timeout=120)

    def initialize(self) -> str:
        """A raw 2025-11-25 session; returns its id."""
        r = self.post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL, "capabilities": {},
            "clientInfo": {"name": "raw-http", "version": "0"}}})
        assert r.status_code == 200, (r.status_code, r.text)
        sid = r.headers["mcp-session-id"]
        n = self.post({"jsonrpc": "2.0", "method": "notifications/initialized"},
                      headers={"Mcp-Session-Id": sid, "MCP-Protocol-Version": PROTOCOL})
        assert n.status_code == 202, (n.status_code, n.text)
        return sid

    def rpc(self, sid: str, method: str, params: dict | None = None, id: Any = 1) -> dict:
        r = self.post({"jsonrpc": "2.0", "id": id, "method": method, "params": params or {}},
                      headers={"Mcp-Session-Id": sid, "MCP-Protocol-Version": PROTOCOL})
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()

    def client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(headers=self.auth(), timeout=httpx2.Timeout(30, read=300))

    @contextlib.asynccontextmanager
    async def session(self):
        """An official SDK ClientSession over Streamable HTTP (initialized)."""
        from mcp import ClientSession
        from mcp.client.streamable_http import streamable_http_client

        async with self.client() as http:
            async with streamable_http_client(self.url, http_client=http) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    yield session

    def signal(self, sig: int) -> None:
        if pid_alive(self.proc.pid, self.start_time):
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        """SIGTERM (SIGKILL after 30 s) and reap."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def cleanup(data: Path) -> None:
    """Whatever still names this data dir (daemons, kernels): stopped by PID."""
    left = pids_mentioning(data)
    if left:
        kill_pids(left)


def tool_json(result: dict) -> dict:
    """structuredContent of a raw tools/call JSON-RPC answer."""
    assert "result" in result, result
    return result["result"].get("structuredContent") or {}


def module_daemon(tmp_path_factory, prefix: str, extra: tuple[str, ...] = ("--stop-kernels-on-exit",)):
    """For a module-scoped pytest fixture (`yield from`): a daemon on a fresh root and data
    dir, stopped (and whatever still names its data dir killed by PID) afterwards."""
    base = tmp_path_factory.mktemp(prefix)
    root, data = base / "root", base / "data"
    for d in (root, data, base / "ipython"):
        d.mkdir()
    d = Daemon(base, root, data, extra=extra)
    try:
        yield d
    finally:
        d.stop()
        cleanup(data)
