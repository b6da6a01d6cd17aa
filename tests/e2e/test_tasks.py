"""MCP tasks (spec 2025-11-25) on execute_cell / execute_code / run_all_cells, spoken as raw
JSON-RPC over stdio (the Python SDK 2.3 has no client API for 2025-11-25 tasks). Task ids are
execution ids, and tasks/get and tasks/result still answer after a kill -9 and restart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import chaos


class RawClient:
    """Newline-delimited JSON-RPC to `jupyter-mcp serve` over its stdin/stdout."""

    def __init__(self, root: Path, data: Path, base: Path):
        self.proc = subprocess.Popen(
            [str(chaos.BINARY), "serve", "--root", str(root), "--data-dir", str(data)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=chaos.server_env(base), text=True, bufsize=1,
        )
        self.next_id = 0
        init = self.request("initialize", {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "raw-tasks-test", "version": "0"},
        })
        self.capabilities = init["result"]["capabilities"]
        self.notify("notifications/initialized")

    def send(self, msg: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()

    def notify(self, method: str, params: dict | None = None) -> None:
        self.send({"jsonrpc": "2.0", "method": method, **({"params": params} if params else {})})

    def request(self, method: str, params: dict | None = None, timeout: float = 120) -> dict:
        self.next_id += 1
        rid = self.next_id
        self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}})
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"server closed its output while waiting for {method}")
            msg = json.loads(line)
            if msg.get("id") == rid:
                return msg
        raise TimeoutError(method)

    def tool(self, name: str, **arguments) -> dict:
        msg = self.request("tools/call", {"name": name, "arguments": arguments})
        assert "result" in msg and not msg["result"].get("isError"), msg
        return msg["result"]["structuredContent"]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


@pytest.mark.timeout(180)
def test_task_augmented_calls_survive_a_restart(dirs):
    base, root, data = dirs
    c = RawClient(root, data, base)
    try:
        assert c.capabilities["tasks"]["requests"]["tools"]["call"] == {}
        tools = {t["name"]: t for t in c.request("tools/list")["result"]["tools"]}
        for name in ("execute_cell", "execute_code", "run_all_cells"):
            assert tools[name]["execution"]["taskSupport"] == "optional"

        c.tool("create_notebook", notebook="t.ipynb", cells=[{"source": "a = 1"}, {"source": "b = a + 1"}])
        created = c.request("tools/call", {
            "name": "execute_code",
            "arguments": {"notebook": "t.ipynb", "code": "import time\ntime.sleep(2)\nprint('slept')"},
            "task": {"ttl": 600000},
        })["result"]["task"]
        tid = created["taskId"]
        assert created["status"] == "working", created
        polled = c.request("tasks/get", {"taskId": tid})["result"]
        assert polled["taskId"] == tid and polled["status"] in ("working", "completed")
        batch = c.request("tools/call", {
            "name": "run_all_cells", "arguments": {"notebook": "t.ipynb"}, "task": {},
        })["result"]["task"]
        c.kill9()

        c = RawClient(root, data, base)
        result = c.request("tasks/result", {"taskId": tid})["result"]
        assert result["structuredContent"]["status"] == "completed", result
        assert result["structuredContent"]["execution_id"] == tid
        assert "slept" in json.dumps(result["structuredContent"]["outputs"])
        assert result["_meta"]["io.modelcontextprotocol/related-task"]["taskId"] == tid
        assert c.request("tasks/get", {"taskId": tid})["result"]["status"] == "completed"

        batch_result = c.request("tasks/result", {"taskId": batch["taskId"]})["result"]
        statuses = [e["status"] for e in batch_result["structuredContent"]["executions"]]
        assert statuses == ["completed", "completed"], batch_result

        listed = {t["taskId"] for t in c.request("tasks/list")["result"]["tasks"]}
        assert {tid, batch["taskId"]} <= listed

        missing = c.request("tasks/get", {"taskId": "no-such-task"})
        assert missing["error"]["code"] == -32602

        # tasks/cancel on a running task interrupts it.
        long = c.request("tools/call", {
            "name": "execute_code",
            "arguments": {"notebook": "t.ipynb", "code": "import time\ntime.sleep(60)"},
            "task": {},
        })["result"]["task"]
        time.sleep(0.5)
        c.request("tasks/cancel", {"taskId": long["taskId"]})
        after = c.request("tasks/result", {"taskId": long["taskId"]})["result"]
        assert after["structuredContent"]["status"] in ("interrupted", "cancelled"), after
        c.tool("shutdown_kernel", notebook="t.ipynb")
    finally:
        c.close()
