"""Gateway faults for real (SPEC §10; issue 12 item 5), beyond the wrong token, the gateway that
is down at start and the kernel deleted while jupyter-mcp was down (test_remote_kernels.py):

- the kernel WebSocket is cut (RST, through a TCP proxy in front of a real Kernel Gateway) while
  a cell runs: jupyter-mcp reconnects with the same session id and every output of the cell
  still arrives, in order; the kernel keeps its variables;
- the gateway is stopped and started again on the same port while jupyter-mcp runs: the kernel
  is recorded dead with a note naming the gateway URL, listing kernelspecs while it is down
  fails with an error naming the URL, and once it is back a new execution runs in a new remote
  kernel without restarting jupyter-mcp.

Every gateway and proxy is stopped by its own PID / thread.
"""

from __future__ import annotations

import json
import time

import anyio
import pytest

from gateway import Gateway, Proxy
from helpers import stream_text

pytestmark = pytest.mark.timeout(240)


def use_gateway(mcp, url: str, token: str) -> None:
    mcp.extra_args = ["--gateway-url", url]
    base_env = mcp.env
    mcp.env = lambda: {**base_env(), "JUPYTER_MCP_GATEWAY_TOKEN": token}


async def out(c, nb: str, code: str) -> dict:
    r = await c.ok("execute_code", notebook=nb, code=code, timeout_s=120)
    assert r["status"] == "completed", r
    return r


CELL = "import time\nfor i in range(6):\n    print(i, flush=True)\n    time.sleep(0.5)\nprint('end')"


def test_cut_websocket_reconnects_and_the_cell_finishes(mcp, tmp_path):
    g = Gateway.start("kernelgateway", tmp_path / "gw" / "work")
    proxy = Proxy(g.port)
    try:
        use_gateway(mcp, proxy.url, g.token)
        nb = "cut.ipynb"

        async def body(c):
            await c.ok("create_notebook", notebook=nb)
            await out(c, nb, "x = 41")
            opened = proxy.connections
            sc = await c.ok("execute_code", notebook=nb, code=CELL, timeout_s=0.2)
            assert sc["status"] == "running", sc
            proxy.drop_all()
            done = await c.wait_done(sc["execution_id"], timeout=90)
            assert done["status"] == "completed", done
            assert stream_text(done["outputs"]) == "0\n1\n2\n3\n4\n5\nend\n", done
            assert proxy.connections > opened, "the WebSocket was made again"
            r = await out(c, nb, "print(x + 1)")
            assert stream_text(r["outputs"]).strip() == "42", r
            await c.ok("shutdown_kernel", notebook=nb)

        mcp.run(body)
    finally:
        proxy.stop()
        g.stop()


def test_gateway_restart_records_dead_and_recovers(mcp, tmp_path):
    g = Gateway.start("kernelgateway", tmp_path / "gw" / "work")
    use_gateway(mcp, g.url, g.token)
    nb = "gw.ipynb"
    try:

        async def body(c):
            nonlocal g
            await c.ok("create_notebook", notebook=nb)
            await out(c, nb, "x = 1")
            g.stop()
            msg = await c.err("list_kernelspecs")
            assert g.url in msg and g.token not in msg, msg
            g = Gateway.start("kernelgateway", g.workdir, port=g.port, token=g.token)
            deadline = time.monotonic() + 60
            while True:  # dead, then dropped from the list
                kernels = (await c.ok("list_kernels"))["kernels"]
                if all(k["state"] == "dead" for k in kernels):
                    break
                assert time.monotonic() < deadline, kernels
                await anyio.sleep(0.2)
            r = await out(c, nb, "print('x' in globals())")
            assert stream_text(r["outputs"]).strip() == "False", r
            text = json.dumps(r)
            assert g.url in text and "gone from the gateway" in text, r
            [k] = (await c.ok("list_kernels"))["kernels"]
            assert k["state"] != "dead" and k["location"].startswith(g.url), k
            await c.ok("shutdown_kernel", notebook=nb)

        mcp.run(body)
    finally:
        g.stop()
