"""Every client, every revision (issue 9 items 10, 11, 13): the release binary driven by
clients no one here wrote.

* TypeScript SDK 1.32 (2025-11-25): validates every structuredContent against the tool's
  outputSchema and warns on non-standard schema formats; no warning, no rejected result.
* TypeScript SDK 1.12 (2025-03-26): rejects any result holding a `resource_link` block, a
  type its revision does not have; plots and long outputs must still come back.
* Python SDK 2.3 in `mode='auto'`: reaches 2026-07-28 through `server/discover`; its tools
  advertise no task support (the tasks extension is not offered) and calls work.

The TypeScript clients live in tests/ts (pinned by package-lock.json, installed by
scripts/setup.sh with `npm ci`); tests/ts/client.mjs runs one scripted session.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

import chaos

TS = chaos.REPO / "tests" / "ts"


def run_ts(sdk: str, root: Path, data: Path, base: Path) -> dict:
    node = shutil.which("node")
    assert node, "node is not installed (scripts/setup.sh expects node 20 and npm)"
    assert (TS / "node_modules" / sdk).is_dir(), \
        f"{TS}/node_modules/{sdk} is missing: run scripts/setup.sh (it runs npm ci in tests/ts)"
    proc = subprocess.run([node, str(TS / "client.mjs"), sdk, str(chaos.BINARY), str(root), str(data)],
                          capture_output=True, text=True, timeout=600, env=chaos.server_env(base), cwd=TS)
    assert proc.returncode == 0, f"node client failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(660)
@pytest.mark.parametrize("sdk,revision", [("sdk-new", "2025-11-25"), ("sdk-old", "2025-03-26")])
def test_typescript_sdk_accepts_every_result(dirs, sdk, revision):
    base, root, data = dirs
    report = run_ts(sdk, root, data, base)
    assert report["protocolVersion"] == revision
    assert len(report["tools"]) > 10
    failed = [c for c in report["calls"] if not c["ok"]]
    assert not failed, json.dumps(failed, indent=1)
    calls = {c["name"]: c for c in report["calls"]}
    for name in ("run_all_cells", "execute_code", "list_variables", "list_kernels"):
        assert not calls[name]["isError"], calls[name]
    assert [c for c in report["calls"] if c["name"] == "read_notebook"][-1]["isError"]
    kinds = {t for c in report["calls"] for t in c.get("contentTypes", [])}
    if revision < "2025-06-18":
        assert "resource_link" not in kinds, kinds
    else:
        assert "resource_link" in kinds, kinds  # the plot's asset, where the revision has it
    noisy = [w for w in report["warnings"] if "format" in w or "strict" in w.lower()]
    assert not noisy, noisy[:5]


@pytest.mark.timeout(300)
def test_python_sdk_auto_mode_reaches_2026_07_28(dirs):
    from mcp import StdioServerParameters
    from mcp.client.client import Client

    base, root, data = dirs
    params = StdioServerParameters(command=str(chaos.BINARY),
                                   args=["serve", "--root", str(root), "--data-dir", str(data),
                                         "--stop-kernels-on-exit"],
                                   env=chaos.server_env(base))

    async def session() -> None:
        async with Client(params, mode="auto", read_timeout_seconds=300) as client:
            assert client.protocol_version == "2026-07-28"
            tools = (await client.list_tools()).tools
            assert len(tools) > 10
            for t in tools:
                execution = getattr(t, "execution", None)
                assert execution is None or getattr(execution, "task_support", None) in (None, "forbidden"), t
            made = await client.call_tool("create_notebook", {"notebook": "p.ipynb"})
            assert not made.is_error, made
            ran = await client.call_tool("execute_code", {"notebook": "p.ipynb", "code": "6 * 7"})
            assert not ran.is_error and ran.structured_content["status"] == "completed", ran
            assert "42" in json.dumps(ran.structured_content["outputs"])
            bad = await client.call_tool("read_notebook", {"notebook": 3})
            assert bad.is_error and "`notebook`" in bad.content[0].text, bad
            await client.call_tool("shutdown_kernel", {"notebook": "p.ipynb"})

    asyncio.run(session())
