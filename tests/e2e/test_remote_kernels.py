"""Remote kernels (SPEC §10, issue 12) against a real `jupyter kernelgateway` and a real
`jupyter server` on 127.0.0.1 with a token, their kernels working outside jupyter-mcp's root:
execute, a plot as image content, interrupt, restart, shutdown (gone from /api/kernels), a
wrong token and a gateway that is down (clear errors naming the URL, never the token), kill -9
of jupyter-mcp and reattach to the same kernel, a kernel gone from the server recorded dead.
Each gateway is started once per module (`gateway.py`); every process is stopped by its PID.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

import chaos
from gateway import Gateway, free_port
from helpers import images_of, write_nb

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def gateways(tmp_path_factory):
    """Each gateway kind started at most once per module, on first use; all stopped at the end."""
    started: dict[str, Gateway] = {}

    def get(kind: str) -> Gateway:
        if kind not in started:
            started[kind] = Gateway.start(kind, tmp_path_factory.mktemp(f"gw-{kind}") / "work")
        return started[kind]

    yield get
    for g in started.values():
        g.stop()


@pytest.fixture(params=["kernelgateway", "server"])
def gw(request, gateways):
    return gateways(request.param)


@pytest.fixture
def kg(gateways):
    """The Kernel Gateway, for the tests that need only one server kind."""
    return gateways("kernelgateway")


def use_gateway(mcp, url: str, token: str) -> None:
    mcp.extra_args = ["--gateway-url", url]
    base_env = mcp.env
    mcp.env = lambda: {**base_env(), "JUPYTER_MCP_GATEWAY_TOKEN": token}


def stdout_of(sc: dict) -> str:
    return "".join(o.get("text", "") for o in sc["outputs"] if o.get("name") == "stdout")


def the_kernel(sc: dict, nb: str) -> dict:
    [k] = [k for k in sc["kernels"] if k["notebook"] == nb]
    return k


def test_execute_plot_interrupt_restart_shutdown(mcp, gw):
    use_gateway(mcp, gw.url, gw.token)

    async def body(c):
        specs = await c.ok("list_kernelspecs")
        assert any(s["name"] == "python3" and s["path"].startswith(gw.url) for s in specs["kernelspecs"]), specs
        await c.ok("create_notebook", notebook="r.ipynb")
        sc = await c.ok("execute_code", notebook="r.ipynb", code="import os\nx = 41\nprint(os.getcwd())")
        assert sc["status"] == "completed", sc
        # The kernel runs where the server runs it, not in jupyter-mcp's root.
        assert Path(stdout_of(sc).strip()).resolve() == gw.workdir.resolve(), sc
        kernels = await c.ok("list_kernels")
        k = the_kernel(kernels, "r.ipynb")
        assert k["location"].startswith(gw.url + " kernel "), k
        assert "pid" not in k, k
        kernel_id = k["location"].rsplit(" ", 1)[1]
        assert kernel_id in gw.kernel_ids()
        assert gw.token not in json.dumps(kernels)

        sc, res = await c.call("execute_code", notebook="r.ipynb",
                               code="%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()")
        assert sc["status"] == "completed", sc
        assert images_of(res), res

        sc = await c.ok("execute_code", notebook="r.ipynb", code="import time\ntime.sleep(60)", timeout_s=1)
        assert sc["status"] == "running", sc
        await c.ok("interrupt_kernel", notebook="r.ipynb")
        done = await c.wait_done(sc["execution_id"], timeout=60)
        assert done["status"] == "interrupted", done
        sc = await c.ok("execute_code", notebook="r.ipynb", code="print(x)")
        assert stdout_of(sc).strip() == "41", sc

        await c.ok("restart_kernel", notebook="r.ipynb")
        after = the_kernel(await c.ok("list_kernels"), "r.ipynb")
        assert after["state"] != "dead" and after["location"] != k["location"], after
        assert kernel_id not in gw.kernel_ids()
        sc = await c.ok("execute_code", notebook="r.ipynb", code="print(x)")
        assert sc["status"] == "failed" and sc["error"]["ename"] == "NameError", sc

        new_id = after["location"].rsplit(" ", 1)[1]
        assert new_id in gw.kernel_ids()
        await c.ok("shutdown_kernel", notebook="r.ipynb")
        assert new_id not in gw.kernel_ids()

    mcp.run(body)


def test_wrong_token_and_gateway_down_are_clear_errors(mcp, kg):
    wrong = "wrong-token-0123456789"
    use_gateway(mcp, kg.url, wrong)

    write_nb(mcp.root / "a.ipynb", [("code", "1+1")])

    async def body(c):
        msg = await c.err("create_notebook", notebook="b.ipynb")
        assert kg.url in msg and "token" in msg and wrong not in msg, msg
        msg = await c.err("execute_code", notebook="a.ipynb", code="1+1")
        assert kg.url in msg and "token" in msg, msg
        assert wrong not in msg, msg
        msg = await c.err("list_kernelspecs")
        assert kg.url in msg and wrong not in msg, msg

    mcp.run(body)
    down = f"http://127.0.0.1:{free_port()}"
    mcp.extra_args = ["--gateway-url", down]

    async def body_down(c):
        msg = await c.err("execute_code", notebook="a.ipynb", code="1+1")
        assert down in msg and wrong not in msg, msg

    mcp.run(body_down)


def server_params(root: Path, data: Path, base: Path, g: Gateway) -> StdioServerParameters:
    env = chaos.server_env(base)
    env["JUPYTER_MCP_GATEWAY_TOKEN"] = g.token
    return StdioServerParameters(
        command=str(chaos.BINARY),
        args=["serve", "--root", str(root), "--data-dir", str(data), "--gateway-url", g.url],
        env=env,
    )


@asynccontextmanager
async def server(base: Path, root: Path, data: Path, g: Gateway):
    async with stdio_client(server_params(root, data, base, g)) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            yield s


async def ok(s: ClientSession, tool: str, **args):
    return await chaos.call(s, tool, **args)


def kill9_server(data: Path) -> None:
    pids = chaos.server_pids(data)
    assert pids, "the server process is running"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


def test_kill9_reattaches_to_the_same_remote_kernel(dirs, kg):
    base, root, data = dirs

    async def location(s) -> str:
        res = await s.call_tool("list_kernels", {})
        return the_kernel(res.structured_content, "r.ipynb")["location"]

    async def body():
        async with server(base, root, data, kg) as s:
            await ok(s, "create_notebook", notebook="r.ipynb",
                     cells=[{"source": "import time\nprint('before', flush=True)\ntime.sleep(3)\nz = 7\nprint('after')"}])
            await ok(s, "execute_code", notebook="r.ipynb", code="y = 5", timeout_s=60)
            before = await location(s)
            nb = await ok(s, "read_notebook", notebook="r.ipynb")
            sc = await ok(s, "execute_cell", notebook="r.ipynb", cell_id=nb["cells"][0]["id"], timeout_s=0.8)
            assert sc["status"] == "running", sc
            eid = sc["execution_id"]
            kill9_server(data)
        async with server(base, root, data, kg) as s:
            done = await ok(s, "get_execution", execution_id=eid, wait_s=30)
            assert done["status"] == "completed", done
            assert await location(s) == before
            sc = await ok(s, "execute_code", notebook="r.ipynb", code="print(y, z)", timeout_s=30)
            assert stdout_of(sc).strip() == "5 7", sc
            kill9_server(data)
        # The kernel goes away while jupyter-mcp is down: recorded dead, with a clear note.
        kernel_id = before.rsplit(" ", 1)[1]
        assert kg.rest("DELETE", f"/api/kernels/{kernel_id}")[0] == 204
        async with server(base, root, data, kg) as s:
            sc = await ok(s, "execute_code", notebook="r.ipynb", code="print('y' in globals())", timeout_s=60)
            assert stdout_of(sc).strip() == "False", sc
            assert "gone from the gateway" in json.dumps(sc), sc
            assert await location(s) != before
            await ok(s, "shutdown_kernel", notebook="r.ipynb")

    asyncio.run(body())
