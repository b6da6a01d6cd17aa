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
