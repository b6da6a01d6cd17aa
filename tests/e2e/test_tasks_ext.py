"""The MCP 2026-07-28 tasks extension (`io.modelcontextprotocol/tasks`, ext-tasks spec
2026-07-28) on execute_code / execute_cell / run_all_cells, spoken as raw JSON-RPC over stdio
and over the daemon's stateless Streamable HTTP pipeline. Raw JSON because no SDK here speaks
the extension as a requester: the Python SDK 2.3 reaches 2026-07-28 but has no tasks/get,
tasks/update or resultType "task"; the npm `@modelcontextprotocol/ext-tasks` package is not
installed by setup.sh.

Covered: server/discover advertises the extension; a call still running after its timeout_s
returns a task handle (resultType "task"); tasks/get polls to `completed` with the tool's
result inlined; input() is `input_required` with an elicitation, answered by tasks/update;
tasks/cancel of a running cell ends it `cancelled`; a task survives kill -9 and a restart;
a client that did not opt in gets plain results and -32021 for tasks/*.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from daemon import Daemon, cleanup, wait_for
from test_tasks import RawClient

EXT = "io.modelcontextprotocol/tasks"
V = "2026-07-28"


def meta(opt_in: bool = True) -> dict:
    caps = {"extensions": {EXT: {}}} if opt_in else {}
    return {"io.modelcontextprotocol/protocolVersion": V,
            "io.modelcontextprotocol/clientCapabilities": caps,
            "io.modelcontextprotocol/clientInfo": {"name": "raw-ext-tasks", "version": "0"}}


class Stdio:
    """A 2026-07-28 client of `serve` over stdio (no initialize)."""

    def __init__(self, root: Path, data: Path, base: Path) -> None:
        self.c = RawClient(root, data, base, version=None)

    def rpc(self, method: str, params: dict, opt_in: bool = True) -> dict:
        return self.c.request(method, {**params, "_meta": meta(opt_in)})

    def close(self) -> None:
        self.c.close()

    def kill9(self) -> None:
        self.c.kill9()


class Http:
    """A 2026-07-28 client of the daemon: stateless POSTs, every request with id 1 (the
    shared pipeline remaps ids; task ids must come through untouched)."""

    def __init__(self, d: Daemon) -> None:
        self.d = d

    def rpc(self, method: str, params: dict, opt_in: bool = True) -> dict:
        headers = {"MCP-Protocol-Version": V, "Mcp-Method": method}
        if "taskId" in params:
            headers["Mcp-Name"] = params["taskId"]  # ext-tasks: routing header
        r = self.d.post({"jsonrpc": "2.0", "id": 1, "method": method,
                         "params": {**params, "_meta": meta(opt_in)}}, headers=headers)
        assert r.status_code == 200, (r.status_code, r.text)
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else \
            json.loads([ln[5:] for ln in r.text.splitlines() if ln.startswith("data:")][-1])
        assert body["id"] == 1, body
        return body


def call(client, tool: str, opt_in: bool = True, **arguments) -> dict:
    answer = client.rpc("tools/call", {"name": tool, "arguments": arguments}, opt_in)
    assert "result" in answer, answer
    return answer["result"]


def poll(client, tid: str, until: tuple[str, ...], timeout: float = 60) -> dict:
    """tasks/get until the status is one of `until` (honouring pollIntervalMs, at most 0.2 s
    here to keep the test short)."""
    def state():
        got = client.rpc("tasks/get", {"taskId": tid})
        assert "result" in got, got
        task = got["result"]
        assert task["resultType"] == "complete" and task["taskId"] == tid, task
        assert task["status"] in ("working", "input_required", "completed", "cancelled"), task
        return task if task["status"] in until else None
    return wait_for(state, timeout, f"task {tid} to reach {until}", step=0.2)


def check_discovery_and_opt_out(client) -> None:
    disc = client.rpc("server/discover", {})
    assert disc["result"]["capabilities"]["extensions"][EXT] == {}, disc
    assert call(client, "create_notebook", notebook="e.ipynb",
                cells=[{"source": "import time"}])["resultType"] == "complete"
    # Not opted in: never a task, even when the cell outlives the wait.
    plain = call(client, "execute_code", opt_in=False, notebook="e.ipynb",
                 code="import time\ntime.sleep(0.5)", timeout_s=0)
    assert plain["resultType"] == "complete" and "taskId" not in plain, plain
    assert plain["structuredContent"]["status"] in ("pending", "running"), plain
    refused = client.rpc("tasks/get", {"taskId": plain["structuredContent"]["execution_id"]},
                         opt_in=False)
    assert refused["error"]["code"] == -32021, refused
    assert refused["error"]["data"]["requiredCapabilities"]["extensions"] == {EXT: {}}
    # Opted in and finished within timeout_s: the plain result.
    quick = call(client, "execute_code", notebook="e.ipynb", code="6*7")
    assert quick["resultType"] == "complete" and quick["structuredContent"]["status"] == "completed"
    assert "42" in json.dumps(quick["structuredContent"]["outputs"])
    missing = client.rpc("tasks/get", {"taskId": "no-such-task"})
    assert missing["error"]["code"] == -32602, missing


def check_task_lifecycle(client) -> None:
    handle = call(client, "execute_code", notebook="e.ipynb",
                  code="time.sleep(1)\nprint('slept')", timeout_s=0)
    assert handle["resultType"] == "task" and handle["status"] == "working", handle
    assert handle["ttlMs"] is None and handle["pollIntervalMs"] > 0, handle
    tid = handle["taskId"]
    done = poll(client, tid, ("completed",))
    assert done["result"]["structuredContent"]["execution_id"] == tid, done
    assert "slept" in json.dumps(done["result"]["structuredContent"]["outputs"]), done

    # input(): input_required with one elicitation, answered by tasks/update.
    asked = call(client, "execute_code", notebook="e.ipynb",
                 code="name = input('who? ')\nprint('hi', name)", timeout_s=0)
    tid = asked["taskId"]
    waiting = poll(client, tid, ("input_required",))
    (key, request), = waiting["inputRequests"].items()
    assert request["method"] == "elicitation/create", request
    assert "who?" in request["params"]["message"], request
    ack = client.rpc("tasks/update", {"taskId": tid, "inputResponses": {
        key: {"action": "accept", "content": {"input": "Luca"}}}})
    assert ack["result"]["resultType"] == "complete", ack
    answered = poll(client, tid, ("completed",))
    assert "hi Luca" in json.dumps(answered["result"]["structuredContent"]["outputs"]), answered

    # tasks/cancel of a running cell: acknowledged, then cancelled.
    long = call(client, "execute_code", notebook="e.ipynb",
                code="print('in', flush=True)\ntime.sleep(60)", timeout_s=0)
    tid = long["taskId"]
    wait_for(lambda: call(client, "get_execution", execution_id=tid)["structuredContent"]["status"]
             == "running", 30, "the long cell to run")
    ack = client.rpc("tasks/cancel", {"taskId": tid})
    assert ack["result"] == {"resultType": "complete", "_meta": ack["result"]["_meta"]}, ack
    poll(client, tid, ("cancelled",), timeout=30)
    ended = call(client, "get_execution", execution_id=tid)["structuredContent"]
    assert ended["status"] in ("interrupted", "cancelled"), ended
    again = client.rpc("tasks/cancel", {"taskId": tid})
    assert again["result"]["resultType"] == "complete", again  # finished: acknowledged, no-op


def start_survivor(client) -> str:
    handle = call(client, "execute_code", notebook="e.ipynb",
                  code="time.sleep(2)\nprint('survived')", timeout_s=0)
    assert handle["resultType"] == "task", handle
    return handle["taskId"]


def check_survivor(client, tid: str) -> None:
    done = poll(client, tid, ("completed",))
    assert "survived" in json.dumps(done["result"]["structuredContent"]["outputs"]), done


@pytest.mark.timeout(180)
def test_tasks_extension_over_stdio(dirs):
    base, root, data = dirs
    s = Stdio(root, data, base)
    try:
        check_discovery_and_opt_out(s)
        check_task_lifecycle(s)
        tid = start_survivor(s)
        s.kill9()
        s = Stdio(root, data, base)
        check_survivor(s, tid)
        call(s, "shutdown_kernel", notebook="e.ipynb")
    finally:
        s.close()


@pytest.mark.timeout(180)
def test_tasks_extension_over_http(tmp_path):
    root, data = tmp_path / "root", tmp_path / "data"
    for d in (root, data, tmp_path / "ipython"):
        d.mkdir()
    d = Daemon(tmp_path, root, data)
    try:
        h = Http(d)
        check_discovery_and_opt_out(h)
        check_task_lifecycle(h)
        tid = start_survivor(h)
        d.signal(9)
        d.wait(30)
        d = Daemon(tmp_path, root, data)
        check_survivor(Http(d), tid)
        call(Http(d), "shutdown_kernel", notebook="e.ipynb")
    finally:
        d.stop()
        cleanup(data)
