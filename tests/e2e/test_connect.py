"""`jupyter-mcp connect [URL] [--spawn]` (issue 10 item 6, SPEC §7): the stdio bridge to the
shared daemon, driven by the official MCP Python SDK's stdio client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

import chaos
from daemon import Daemon, cleanup, read_daemon_json, wait_for
from helpers import pid_alive, pids_mentioning, proc_start_time


def bridge(base: Path, data: Path, root: Path, *args: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=str(chaos.BINARY),
        args=["connect", *args, "--data-dir", str(data), "--root", str(root)],
        env=chaos.server_env(base),
    )


def sessions_gauge(d: Daemon) -> float:
    for line in d.get("/metrics", headers=d.auth()).text.splitlines():
        if line.startswith("mcp_sessions "):
            return float(line.split()[1])
    raise AssertionError("mcp_sessions not exported")


@pytest.mark.timeout(180)
def test_connect_bridges_a_stdio_client_to_the_daemon(dirs):
    base, root, data = dirs
    d = Daemon(base, root, data, extra=("--stop-kernels-on-exit",))
    try:
        async def body() -> None:
            # URL from DATA_DIR/daemon.json, token from DATA_DIR/token.
            with open(base / "bridge.stderr", "a") as errlog:
                async with stdio_client(bridge(base, data, root), errlog=errlog) as (read, write):
                    async with ClientSession(read, write) as s:
                        init = await s.initialize()
                        assert init.protocol_version == "2025-11-25"
                        assert sessions_gauge(d) == 1
                        assert len((await s.list_tools()).tools) > 10
                        await s.call_tool("create_notebook", {"notebook": "c.ipynb"})
                        ran = await s.call_tool("execute_code", {"notebook": "c.ipynb", "code": "6 * 7"})
                        assert ran.structured_content["status"] == "completed", ran
                        assert "42" in json.dumps(ran.structured_content["outputs"])
                        bad = await s.call_tool("read_notebook", {"notebook": 3})
                        assert bad.is_error and "`notebook`" in bad.content[0].text
                        await s.call_tool("shutdown_kernel", {"notebook": "c.ipynb"})
            # The bridge ended its session when stdin closed.
            wait_for(lambda: sessions_gauge(d) == 0, 10, "the bridge's DELETE")

        asyncio.run(body())
        # Without a daemon and without --spawn: a clear error, non-zero.
        lonely = subprocess.run([str(chaos.BINARY), "connect", "http://127.0.0.1:9/mcp",
                                 "--data-dir", str(data)], input="", capture_output=True, text=True,
                                env=chaos.server_env(base), timeout=30)
        assert lonely.returncode != 0 and "--spawn" in lonely.stderr, lonely.stderr
    finally:
        d.stop()
        cleanup(data)


@pytest.mark.timeout(180)
def test_two_connect_spawn_make_one_daemon(dirs):
    """Two bridges with --spawn start together on a data dir without a daemon: both spawn one,
    server.lock lets one serve, and both bridges talk to that one."""
    base, root, data = dirs
    url = "http://127.0.0.1:0/mcp"  # port 0: the winner's real URL is in daemon.json

    async def one(name: str) -> str:
        async with stdio_client(bridge(base, data, root, url, "--spawn"),
                                errlog=open(base / f"{name}.stderr", "a")) as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                listed = await s.call_tool("list_notebooks", {})
                assert not listed.is_error, listed
                return "ok"

    async def both() -> list[str]:
        return await asyncio.gather(one("a"), one("b"))

    try:
        assert asyncio.run(both()) == ["ok", "ok"]
        info = read_daemon_json(data)
        assert info and pid_alive(info["pid"]), info
        servers = [p for p in pids_mentioning(data)
                   if os.readlink(f"/proc/{p}/exe").endswith("jupyter-mcp")
                   and b"serve" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert servers == [info["pid"]], (servers, info)
        # Detached: its own session and process group, logging to DATA_DIR/daemon.log.
        assert os.getsid(info["pid"]) == info["pid"] and os.getpgid(info["pid"]) == info["pid"]
        assert "serving MCP at" in (data / "daemon.log").read_text()
        started = proc_start_time(info["pid"])
        os.kill(info["pid"], signal.SIGTERM)
        wait_for(lambda: not pid_alive(info["pid"], started), 30, "the daemon to exit")
    finally:
        cleanup(data)


@pytest.mark.timeout(180)
def test_connect_spawn_starts_a_new_daemon_when_its_daemon_dies(dirs):
    """`connect --spawn` passes the options it was given to the daemon it starts; when that
    daemon is killed (-9) in the middle of a call, the call gets a JSON-RPC error saying so,
    and the next call starts a new daemon (which reattaches the kernel: its variables are
    still there) on a renewed session, without the client doing anything."""
    from mcp.shared.exceptions import MCPError

    base, root, data = dirs
    url = "http://127.0.0.1:0/mcp"
    flag = root / "cell-started"
    pids: list[int] = []

    async def body() -> None:
        params = bridge(base, data, root, url, "--spawn", "--max-text-bytes=3000",
                        "--serve-arg=--stop-kernels-on-exit")
        async with stdio_client(params, errlog=open(base / "bridge.stderr", "a")) as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                first = read_daemon_json(data)
                pids.append(first["pid"])
                argv = Path(f"/proc/{first['pid']}/cmdline").read_bytes().split(b"\0")
                assert b"--max-text-bytes=3000" in argv and b"--stop-kernels-on-exit" in argv, argv
                await s.call_tool("create_notebook", {"notebook": "k.ipynb"})
                ran = await s.call_tool("execute_code", {"notebook": "k.ipynb", "code": "x = 41"})
                assert ran.structured_content["status"] == "completed", ran
                # A call in flight when the daemon dies: a clear error for that call.
                slow = asyncio.create_task(s.call_tool("execute_code", {
                    "notebook": "k.ipynb", "timeout_s": 120,
                    "code": f"open({str(flag)!r}, 'w').close()\nimport time\ntime.sleep(15)"}))
                while not flag.exists():
                    assert not slow.done(), slow.result()
                    await asyncio.sleep(0.05)
                started = proc_start_time(first["pid"])
                os.kill(first["pid"], signal.SIGKILL)
                with pytest.raises(MCPError, match="stopped answering during this call"):
                    await slow
                wait_for(lambda: not pid_alive(first["pid"], started), 30, "the killed daemon to go")
                # The next call works: a new daemon, the same kernel (x survived).
                listed = await s.call_tool("list_notebooks", {})
                assert not listed.is_error, listed
                second = read_daemon_json(data)
                assert second and second["pid"] != first["pid"] and pid_alive(second["pid"]), second
                pids.append(second["pid"])
                argv = Path(f"/proc/{second['pid']}/cmdline").read_bytes().split(b"\0")
                assert b"--max-text-bytes=3000" in argv, argv
                again = await s.call_tool("execute_code", {"notebook": "k.ipynb", "code": "x + 1",
                                                           "timeout_s": 90})
                assert again.structured_content["status"] == "completed", again
                assert "42" in json.dumps(again.structured_content["outputs"]), again

    try:
        asyncio.run(body())
        # The kernel was started with --stop-kernels-on-exit: a SIGTERM ends both.
        last = pids[-1]
        started = proc_start_time(last)
        os.kill(last, signal.SIGTERM)
        wait_for(lambda: not pid_alive(last, started), 40, "the new daemon to exit")
    finally:
        cleanup(data)
