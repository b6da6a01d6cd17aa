"""MCP tasks (spec 2025-11-25) on execute_cell / execute_code / run_all_cells, spoken as raw
JSON-RPC over stdio (the Python SDK 2.3 has no client API for 2025-11-25 tasks). Task ids are
execution ids, and tasks/get and tasks/result still answer after a kill -9 and restart.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

import chaos


class RawClient:
    """Newline-delimited JSON-RPC to `jupyter-mcp serve` over its stdin/stdout. A reader thread
    queues every output line, so each wait is bounded; `send_raw` writes arbitrary bytes.
    Also used by test_fuzz.py and test_clients.py."""

    def __init__(self, root: Path, data: Path, base: Path, version: str | None = "2025-11-25",
                 extra: tuple[str, ...] = ()):
        self.proc = subprocess.Popen(
            [str(chaos.BINARY), "serve", "--root", str(root), "--data-dir", str(data), *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=chaos.server_env(base), bufsize=0,
        )
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.next_id = 0
        self.capabilities: dict = {}
        self.protocol_version = version
        if version is not None:
            init = self.request("initialize", {
                "protocolVersion": version,
                "capabilities": {},
                "clientInfo": {"name": "raw-test", "version": "0"},
            })
            self.capabilities = init["result"]["capabilities"]
            self.protocol_version = init["result"]["protocolVersion"]
            self.notify("notifications/initialized")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, msg: dict) -> None:
        self.send_raw(json.dumps(msg).encode() + b"\n")

    def notify(self, method: str, params: dict | None = None) -> None:
        self.send({"jsonrpc": "2.0", "method": method, **({"params": params} if params else {})})

    def next_message(self, timeout: float) -> dict:
        """The next line the server writes, parsed; raises TimeoutError or EOFError."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no output within {timeout}s") from None
        if line is None:
            self.lines.put(None)
            raise EOFError(f"server closed its output (exit code {self.proc.poll()})")
        return json.loads(line)

    def wait_for(self, rid, timeout: float = 120) -> dict:
        """The response with id `rid` (other messages are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.next_message(max(0.0, deadline - time.monotonic()))
            if msg.get("id") == rid and "method" not in msg:
                return msg

    def request(self, method: str, params: dict | None = None, timeout: float = 120) -> dict:
        self.next_id += 1
        rid = self.next_id
        self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}})
        return self.wait_for(rid, timeout)

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


@pytest.mark.timeout(180)
def test_cancel_answers_cancelled_and_refuses_a_finished_task(dirs):
    """2025-11-25 tasks/cancel: the response already says `cancelled` (the task is cancelled
    before the response); cancelling a finished task is -32602."""
    base, root, data = dirs
    c = RawClient(root, data, base)
    try:
        c.tool("create_notebook", notebook="c.ipynb", cells=[{"source": "x = 1"}])
        done = c.request("tools/call", {
            "name": "execute_code", "arguments": {"notebook": "c.ipynb", "code": "1"}, "task": {},
        })["result"]["task"]
        c.request("tasks/result", {"taskId": done["taskId"]})
        refused = c.request("tasks/cancel", {"taskId": done["taskId"]})
        assert refused.get("error", {}).get("code") == -32602, refused
        assert "already finished" in refused["error"]["message"]

        # A running cell (it has printed, so it is in the kernel) plus a queued one behind it.
        running = c.request("tools/call", {
            "name": "execute_code",
            "arguments": {"notebook": "c.ipynb", "code": "import time\nprint('in', flush=True)\ntime.sleep(60)"},
            "task": {},
        })["result"]["task"]
        while c.tool("get_execution", execution_id=running["taskId"], wait_s=0)["status"] != "running":
            c.tool("get_execution", execution_id=running["taskId"], wait_s=0.2)
        answer = c.request("tasks/cancel", {"taskId": running["taskId"]})
        assert answer["result"]["status"] == "cancelled", answer
        assert c.request("tasks/get", {"taskId": running["taskId"]})["result"]["status"] == "cancelled"
        again = c.request("tasks/cancel", {"taskId": running["taskId"]})
        assert again.get("error", {}).get("code") == -32602, again
        c.tool("shutdown_kernel", notebook="c.ipynb")
    finally:
        c.close()


def inline_meta(version: str = "2026-07-28") -> dict:
    return {"io.modelcontextprotocol/protocolVersion": version,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "raw-2026", "version": "0"}}


@pytest.mark.timeout(120)
def test_2026_07_28_sessions_get_no_tasks_and_plain_calls(dirs):
    """2026-07-28 has no initialize and moves tasks into an extension this server does not
    offer: tools advertise no taskSupport, and a call with params.task is a plain call whose
    result is a CallToolResult (not a bare {task})."""
    base, root, data = dirs
    c = RawClient(root, data, base, version=None)
    try:
        c.next_id = 100
        disc = c.request("server/discover", {"_meta": inline_meta()})
        assert "result" in disc, disc
        assert "2026-07-28" in json.dumps(disc["result"])
        tools = c.request("tools/list", {"_meta": inline_meta()})["result"]["tools"]
        assert tools and all("execution" not in t or "taskSupport" not in t["execution"] for t in tools), tools
        made = c.request("tools/call", {"_meta": inline_meta(), "name": "create_notebook",
                                        "arguments": {"notebook": "n.ipynb"}})
        assert made["result"].get("isError") is not True, made
        call = c.request("tools/call", {"_meta": inline_meta(), "name": "execute_code",
                                        "arguments": {"notebook": "n.ipynb", "code": "6*7"},
                                        "task": {"ttl": 1000}})
        result = call["result"]
        assert "task" not in result and result.get("resultType", "complete") == "complete", result
        assert result["structuredContent"]["status"] == "completed", result
        assert "42" in json.dumps(result["structuredContent"]["outputs"])
        c.request("tools/call", {"_meta": inline_meta(), "name": "shutdown_kernel",
                                 "arguments": {"notebook": "n.ipynb"}})
    finally:
        c.close()
