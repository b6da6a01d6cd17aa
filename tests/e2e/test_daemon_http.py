"""Daemon mode (issue 10, SPEC §7): `serve --transport http` driven by the official MCP
Python SDK over Streamable HTTP (and raw HTTP where the SDK hides the wire), the TypeScript
SDK, and signals. One daemon serves most tests of this module (kernel starts are the cost);
the shutdown / crash test has its own."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
from pathlib import Path

import httpx2
import pytest

import chaos
from daemon import PROTOCOL, Daemon, module_daemon, cleanup, read_daemon_json, tool_json, wait_for
from helpers import kill_pids, pid_alive, proc_start_time

TS = Path(__file__).resolve().parents[1] / "ts"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    yield from module_daemon(tmp_path_factory, "daemon")


@pytest.mark.timeout(120)
def test_token_origin_host_and_limits(daemon: Daemon):
    d = daemon
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
    # Health needs no token; everything else does (RFC 6750 challenge).
    assert d.get("/health/live").status_code == 200
    assert d.get("/health/ready").json()["status"] == "ready"
    missing = d.post(init, auth=False)
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    wrong = d.post(init, auth=False, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
    assert d.token not in wrong.text and str(d.data / "token") in wrong.text
    assert d.get("/metrics").status_code == 401
    assert d.get(f"/metrics?token={d.token}").status_code == 200, "GET takes ?token= too"
    # Foreign Origin and non-loopback Host: 403 even with the token.
    evil = d.post(init, headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403 and "--allowed-origin" in evil.text
    own = d.post(init, headers={"Origin": d.base_url.replace("127.0.0.1", "localhost")})
    assert own.status_code == 200, own.text
    rebinding = d.post(init, headers={"Host": "attacker.example:80"})
    assert rebinding.status_code == 403 and "loopback" in rebinding.text
    # Metrics: Prometheus text with the names that exist.
    metrics = d.get("/metrics", headers=d.auth())
    assert metrics.status_code == 200
    for name in ("mcp_sessions", "checkpoint_save_duration_seconds", "security_signature_failures_total"):
        assert name in metrics.text, name
    # Oversized body: 413; malformed JSON-RPC: answered.
    big = d.post(None, raw=b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"' + b"x" * (16 << 20) + b'"}}')
    assert big.status_code == 413 and big.json()["error"]["code"] == -32600
    bad = d.post(None, raw=b"{not json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == -32700
    batch = d.post([{"jsonrpc": "2.0", "id": 5, "method": "ping"}])
    assert batch.json() == {"jsonrpc": "2.0", "id": 5, "error": batch.json()["error"]}
    assert batch.json()["error"]["code"] == -32600 and "batches" in batch.text
    no_session = d.post({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    assert no_session.status_code == 400 and "Mcp-Session-Id" in no_session.text
    unknown = d.post({"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                     headers={"Mcp-Session-Id": "0" * 64})
    assert unknown.status_code == 404
    sid = d.initialize()
    params = d.rpc(sid, "tools/call", {"name": "read_notebook", "arguments": []}, id="x")
    assert params["id"] == "x" and params["error"]["code"] == -32602
    deleted = httpx2.delete(d.url, headers={**d.auth(), "Mcp-Session-Id": sid})
    assert deleted.status_code in (200, 204)
    assert d.post({"jsonrpc": "2.0", "id": 3, "method": "tools/list"},
                  headers={"Mcp-Session-Id": sid}).status_code == 404


@pytest.mark.timeout(120)
def test_second_daemon_on_the_data_dir_is_refused(daemon: Daemon):
    proc = subprocess.run(
        [str(chaos.BINARY), "serve", "--transport", "http", "--bind", "127.0.0.1:0",
         "--root", str(daemon.root), "--data-dir", str(daemon.data)],
        capture_output=True, text=True, env=chaos.server_env(daemon.base_dir), timeout=60)
    assert proc.returncode != 0
    assert f"PID {daemon.proc.pid}" in proc.stderr and daemon.url in proc.stderr, proc.stderr
    # A stdio server and `run` are refused the same way.
    stdio = subprocess.run([str(chaos.BINARY), "serve", "--data-dir", str(daemon.data),
                            "--root", str(daemon.root)], input="", capture_output=True, text=True,
                           env=chaos.server_env(daemon.base_dir), timeout=60)
    assert stdio.returncode != 0 and daemon.url in stdio.stderr, stdio.stderr
    assert read_daemon_json(daemon.data)["pid"] == daemon.proc.pid, "the refused one left it alone"


@pytest.mark.timeout(180)
def test_sessions_run_in_parallel_and_share_kernels(daemon: Daemon):
    """Session A waits in a cell for a file that only session B creates: it can finish only
    if B's calls run while A's is pending. A second call of session A answers meanwhile too.
    Then a variable set by one session in a notebook is seen by the other."""
    root = daemon.root
    flag = root / "flag-from-b"

    async def body() -> None:
        async with daemon.session() as a, daemon.session() as b:
            for s, nb in ((a, "a.ipynb"), (b, "b.ipynb")):
                made = await s.call_tool("create_notebook", {"notebook": nb})
                assert not made.is_error, made
            waiting = asyncio.create_task(a.call_tool("execute_code", {
                "notebook": "a.ipynb", "timeout_s": 120,
                "code": "import os, time\nwhile not os.path.exists('flag-from-b'):\n    time.sleep(0.02)\nprint('saw the flag')",
            }, read_timeout_seconds=180))
            # Session A's second request is answered while its first one waits.
            listed = await a.call_tool("list_notebooks", {})
            assert not listed.is_error and not waiting.done()
            made = await b.call_tool("execute_code", {
                "notebook": "b.ipynb", "code": f"open({str(flag)!r}, 'w').close()", "timeout_s": 120})
            assert made.structured_content["status"] == "completed", made
            done = await waiting
            assert done.structured_content["status"] == "completed", done
            assert "saw the flag" in json.dumps(done.structured_content["outputs"])
            # One kernel per notebook, whichever session drives it.
            await b.call_tool("execute_code", {"notebook": "a.ipynb", "code": "shared = 6 * 7"})
            seen = await a.call_tool("execute_code", {"notebook": "a.ipynb", "code": "shared"})
            assert "42" in json.dumps(seen.structured_content["outputs"]), seen

    asyncio.run(body())


@pytest.mark.timeout(120)
def test_tasks_are_listed_per_session_and_readable_from_any(daemon: Daemon):
    d = daemon
    one, two = d.initialize(), d.initialize()
    d.rpc(one, "tools/call", {"name": "create_notebook", "arguments": {"notebook": "t.ipynb"}})
    created = d.rpc(one, "tools/call", {"name": "execute_code", "task": {},
                                        "arguments": {"notebook": "t.ipynb", "code": "print('task ran')"}})
    tid = created["result"]["task"]["taskId"]
    assert tid in {t["taskId"] for t in d.rpc(one, "tasks/list")["result"]["tasks"]}
    assert tid not in {t["taskId"] for t in d.rpc(two, "tasks/list")["result"]["tasks"]}
    result = d.rpc(two, "tasks/result", {"taskId": tid})["result"]
    assert result["structuredContent"]["status"] == "completed" and "task ran" in json.dumps(result)
    assert d.rpc(two, "tasks/get", {"taskId": tid})["result"]["status"] == "completed"
    # Same JSON-RPC id from two sessions at once: each gets its own answer.
    a = d.rpc(one, "tools/call", {"name": "list_notebooks", "arguments": {}}, id=7)
    b = d.rpc(two, "tools/call", {"name": "list_kernels", "arguments": {}}, id=7)
    assert "notebooks" in tool_json(a) and "kernels" in tool_json(b)


@pytest.mark.timeout(120)
def test_progress_streams_as_sse_before_the_response(daemon: Daemon):
    d = daemon
    sid = d.initialize()
    d.rpc(sid, "tools/call", {"name": "create_notebook", "arguments": {"notebook": "p.ipynb"}})
    r = d.post({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
        "name": "execute_code", "_meta": {"progressToken": "tok-1"},
        "arguments": {"notebook": "p.ipynb", "timeout_s": 60,
                      "code": "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.4)"}}},
        headers={"Mcp-Session-Id": sid, "MCP-Protocol-Version": PROTOCOL})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"), r.text
    events = [json.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data:")]
    assert events[-1]["id"] == 9 and events[-1]["result"]["structuredContent"]["status"] == "completed"
    progress = [e for e in events[:-1] if e.get("method") == "notifications/progress"]
    assert progress and all(p["params"]["progressToken"] == "tok-1" for p in progress), events


@pytest.mark.timeout(120)
def test_stateless_2026_07_28_round_trip(daemon: Daemon):
    from mcp.client.client import Client
    from mcp.client.streamable_http import streamable_http_client

    async def body() -> None:
        async with daemon.client() as http:
            async with Client(streamable_http_client(daemon.url, http_client=http), mode="auto",
                              read_timeout_seconds=120) as client:
                assert client.protocol_version == "2026-07-28"
                assert len((await client.list_tools()).tools) > 10
                await client.call_tool("create_notebook", {"notebook": "s.ipynb"})
                ran = await client.call_tool("execute_code", {"notebook": "s.ipynb", "code": "6 * 7"})
                assert ran.structured_content["status"] == "completed", ran
                assert "42" in json.dumps(ran.structured_content["outputs"])

    asyncio.run(body())


@pytest.mark.timeout(180)
def test_typescript_sdk_over_http(daemon: Daemon):
    node = shutil.which("node")
    assert node, "node is not installed (scripts/setup.sh expects node 20 and npm)"
    env = {**os.environ, "JUPYTER_MCP_TOKEN": daemon.token}
    proc = subprocess.run([node, str(TS / "http_client.mjs"), "sdk-new", daemon.url],
                          capture_output=True, text=True, timeout=150, cwd=TS, env=env)
    assert proc.returncode == 0, f"node client failed:\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["protocolVersion"] == "2025-11-25" and len(report["tools"]) > 10
    failed = [c for c in report["calls"] if not c["ok"] or c["isError"]]
    assert not failed, failed
    assert all(c["structured"] for c in report["calls"]), report["calls"]


@pytest.mark.timeout(240)
def test_kill9_restart_reattaches_then_sigterm_lets_the_cell_finish(tmp_path: Path):
    """kill -9 of the daemon, a restart that reattaches the kernel and answers tasks/get and
    get_execution for an execution started before; then SIGTERM while a cell runs: new requests
    get 503, the cell completes within the grace, exit 0, and the kernel keeps running."""
    root, data = tmp_path / "root", tmp_path / "data"
    for p in (root, data, tmp_path / "ipython"):
        p.mkdir()
    kernel: dict[int, int | None] = {}
    try:
        d = Daemon(tmp_path, root, data)
        sid = d.initialize()
        d.rpc(sid, "tools/call", {"name": "create_notebook", "arguments": {"notebook": "k.ipynb"}})
        first = tool_json(d.rpc(sid, "tools/call", {"name": "execute_code", "arguments": {
            "notebook": "k.ipynb", "code": "x = 41"}}))
        assert first["status"] == "completed", first
        pid = tool_json(d.rpc(sid, "tools/call", {"name": "list_kernels", "arguments": {}}))["kernels"][0]["pid"]
        kernel[pid] = proc_start_time(pid)
        gate = root / "gate"
        task = d.rpc(sid, "tools/call", {"name": "execute_code", "task": {}, "arguments": {
            "notebook": "k.ipynb",
            "code": "import os, time\nwhile not os.path.exists('gate'):\n    time.sleep(0.02)\nx += 1\nprint('through', x)"}})
        tid = task["result"]["task"]["taskId"]
        wait_for(lambda: d.rpc(sid, "tasks/get", {"taskId": tid})["result"]["status"] == "working", 30, "working")
        d.proc.kill()
        d.wait(30)

        d = Daemon(tmp_path, root, data)
        sid = d.initialize()
        gate.touch()  # the cell that ran through the crash finishes under the new daemon
        result = d.rpc(sid, "tasks/result", {"taskId": tid})["result"]
        assert result["structuredContent"]["status"] == "completed", result
        assert "through 42" in json.dumps(result["structuredContent"]["outputs"])
        assert d.rpc(sid, "tasks/get", {"taskId": tid})["result"]["status"] == "completed"
        got = tool_json(d.rpc(sid, "tools/call", {"name": "get_execution", "arguments": {"execution_id": tid}}))
        assert got["status"] == "completed", got
        again = tool_json(d.rpc(sid, "tools/call", {"name": "list_kernels", "arguments": {}}))
        assert again["kernels"][0]["pid"] == pid, "the kernel was reattached, not restarted"

        # SIGTERM with a running cell.
        gate.unlink()
        running = tool_json(d.rpc(sid, "tools/call", {"name": "execute_code", "arguments": {
            "notebook": "k.ipynb", "timeout_s": 0.1,
            "code": "import os, time\nwhile not os.path.exists('gate'):\n    time.sleep(0.02)\nprint('finished in grace')"}}))
        assert running["status"] == "running", running
        # Queued behind it: it must not start during the grace (it would be cut off), and
        # stays pending for the next start.
        queued = tool_json(d.rpc(sid, "tools/call", {"name": "execute_code", "arguments": {
            "notebook": "k.ipynb", "timeout_s": 0.1, "code": "open('queued-ran', 'w').write('x')"}}))
        assert queued["status"] == "pending", queued
        # A request in flight at SIGTERM: its SSE response has started (headers received).
        http = httpx2.Client(timeout=120)
        waiting = http.send(http.build_request("POST", d.url, headers={
            **d.auth(), "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
            "Mcp-Session-Id": sid, "MCP-Protocol-Version": PROTOCOL,
        }, content=json.dumps({"jsonrpc": "2.0", "id": "in-flight", "method": "tools/call", "params": {
            "name": "get_execution", "_meta": {"progressToken": "w"},
            "arguments": {"execution_id": running["execution_id"], "wait_s": 120}}})), stream=True)
        assert waiting.status_code == 200 and waiting.headers["content-type"].startswith("text/event-stream")
        d.signal(signal.SIGTERM)
        wait_for(lambda: d.get("/health/ready").status_code == 503, 30, "draining")
        refused = d.post({"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                         headers={"Mcp-Session-Id": sid})
        assert refused.status_code == 503, refused.text
        gate.touch()
        events = [json.loads(line[5:]) for line in waiting.read().decode().splitlines() if line.startswith("data:")]
        http.close()
        assert tool_json(events[-1])["status"] == "completed", "a request in flight at SIGTERM is answered"
        assert d.wait(60) == 0, d.stderr()
        assert read_daemon_json(data) is None, "a clean exit removes daemon.json"
        with sqlite3.connect(data / "state.db") as db:
            status = db.execute("SELECT status FROM executions WHERE id = ?", (running["execution_id"],)).fetchone()
            left = db.execute("SELECT status FROM executions WHERE id = ?", (queued["execution_id"],)).fetchone()
        assert status == ("completed",), status
        assert left == ("pending",) and not (root / "queued-ran").exists(), left
        assert pid_alive(pid, kernel[pid]), "kernels keep running without --stop-kernels-on-exit"
    finally:
        kill_pids(kernel)
        cleanup(data)


@pytest.mark.timeout(120)
def test_a_client_that_disconnects_mid_call_loses_nothing(daemon: Daemon):
    """The HTTP request of a running execute_code is closed by its client; the execution
    goes on and another session reads it with get_execution."""
    d = daemon
    sid, other = d.initialize(), d.initialize()
    d.rpc(sid, "tools/call", {"name": "create_notebook", "arguments": {"notebook": "dc.ipynb"}})
    gate = d.root / "dc-gate"
    http = httpx2.Client(timeout=60)
    response = http.send(http.build_request("POST", d.url, headers={
        **d.auth(), "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
        "Mcp-Session-Id": sid, "MCP-Protocol-Version": PROTOCOL,
    }, content=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "execute_code", "_meta": {"progressToken": "dc"},
        "arguments": {"notebook": "dc.ipynb", "timeout_s": 60,
                      "code": "import os, time\nwhile not os.path.exists('dc-gate'):\n    time.sleep(0.02)\nprint('after the disconnect')"}}})),
        stream=True)
    assert response.status_code == 200  # the request is in the session's pipeline
    response.close()
    http.close()  # the client is gone

    def listed():
        execs = tool_json(d.rpc(other, "tools/call", {"name": "list_executions",
                                                      "arguments": {"notebook": "dc.ipynb"}}))["executions"]
        return execs[0]["execution_id"] if execs else None

    eid = wait_for(listed, 30, "the execution of the closed request")
    gate.touch()
    done = tool_json(d.rpc(other, "tools/call", {"name": "get_execution",
                                                 "arguments": {"execution_id": eid, "wait_s": 60}}))
    assert done["status"] == "completed" and "after the disconnect" in json.dumps(done), done
