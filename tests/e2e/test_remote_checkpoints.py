"""Checkpoints of remote kernels (SPEC §10, §6; issue 12 item 4) against a real
`jupyter kernelgateway` and a real `jupyter server` (Kernel Gateway with the v1 WebSocket subprotocol, Jupyter
Server forced to the legacy JSON form): save_environment / load_environment move the dill bytes over the messaging
protocol (comm messages with binary buffers), into DATA_DIR/checkpoints in the same signed format
as local checkpoints. A pandas DataFrame (several chunks) and a lambda survive a restore into a
fresh remote kernel, a tampered file is refused before anything reaches the kernel, the kernel's
temp files are gone afterwards, and a checkpoint saved remotely loads into a local kernel and
back. The gateways run in their own mount namespace where jupyter-mcp's folders are hidden (as on
another machine). Each gateway is started once per module (`gateway.py`) and stopped by its PID.
"""

from __future__ import annotations

import json

import pytest

from gateway import Gateway
from helpers import stream_text
from test_checkpoints import ckpt_files

pytestmark = pytest.mark.timeout(240)

SETUP = """
import numpy as np, pandas as pd, hashlib
df = pd.DataFrame(np.random.default_rng(1).standard_normal((300_000, 4)), columns=list("abcd"))
df["label"] = pd.Categorical(np.where(df["a"] > 0, "pos", "neg"))
square_plus = lambda x: x * x + 1
def fingerprint():
    h = hashlib.sha256(pd.util.hash_pandas_object(df, index=True).values.tobytes()).hexdigest()
    return (h, square_plus(3), str(df["label"].dtype), df.shape)
print(fingerprint())
"""
PROBE = "print(sorted(k for k in ('df', 'square_plus') if k in globals()))"


@pytest.fixture(scope="module")
def gateways(tmp_path_factory):
    started: dict[str, Gateway] = {}

    def get(kind: str) -> Gateway:
        if kind not in started:
            # The kernels cannot see jupyter-mcp's DATA_DIR (under the same pytest base folder):
            # the bytes can only travel over the messaging protocol.
            started[kind] = Gateway.start(kind, tmp_path_factory.mktemp(f"gw-{kind}") / "work",
                                          hide=tmp_path_factory.getbasetemp())
        return started[kind]

    yield get
    for g in started.values():
        g.stop()


def use_gateway(mcp, g: Gateway | None) -> None:
    if not hasattr(mcp, "_base_env"):
        mcp._base_env = mcp.env
    base_env = mcp._base_env
    if g is None:
        mcp.extra_args = []
        mcp.env = base_env
    else:
        mcp.extra_args = ["--gateway-url", g.url]
        mcp.env = lambda: {**base_env(), "JUPYTER_MCP_GATEWAY_TOKEN": g.token}


async def out(c, nb: str, code: str) -> str:
    r = await c.ok("execute_code", notebook=nb, code=code, timeout_s=120)
    assert r["status"] == "completed", r
    return stream_text(r["outputs"]).strip()


def kernel_temp_files(g: Gateway) -> list[str]:
    return sorted(p.name for p in g.tmpdir.glob("jmcp-checkpoint-*"))


# Kernel Gateway with the v1 subprotocol; Jupyter Server forced to the legacy JSON form (binary
# frames for messages with buffers). Jupyter Server's v1 path is Kernel Gateway's (same code).
@pytest.mark.parametrize("kind", ["kernelgateway", "server-json"])
def test_checkpoint_over_the_wire(mcp, gateways, kind):
    g = gateways(kind)
    use_gateway(mcp, g)
    nb = "w.ipynb"

    async def body(c):
        await c.ok("create_notebook", notebook=nb)
        # The remote kernel cannot see our DATA_DIR (so a file path could not work).
        assert await out(c, nb, f"import os\nprint(os.path.exists({str(c.data)!r}))") == "False"
        before = await out(c, nb, SETUP)
        s = await c.ok("save_environment", notebook=nb, name="wire")
        saved = {v["name"]: v for v in s["saved"]}
        assert saved["df"]["type"] == "pandas.DataFrame" and saved["df"]["bytes"] > 9_000_000, saved
        assert "square_plus" in saved and "fingerprint" in saved, saved
        assert s["bytes"] > 9_000_000 and len(s["sha256"]) == 64, s  # several 1 MiB chunks
        meta, data = ckpt_files(c.data, "wire")
        assert data.stat().st_size == s["bytes"] and meta.stat().st_mode & 0o777 == 0o600
        assert kernel_temp_files(g) == [], "the kernel's temp file is removed after the save"
        assert not any(meta.parent.glob(".tmp-*")), "no temp file left in DATA_DIR"

        # A fresh remote kernel (restart_kernel starts a new one on the gateway).
        k_before = (await c.ok("list_kernels"))["kernels"][0]["location"]
        await c.ok("restart_kernel", notebook=nb)
        assert (await c.ok("list_kernels"))["kernels"][0]["location"] != k_before
        assert await out(c, nb, PROBE) == "[]"

        # Tampered: one byte of the data flipped -> refused, nothing reaches the kernel.
        orig = data.read_bytes()
        t = bytearray(orig)
        t[len(t) // 2] ^= 0x01
        data.write_bytes(bytes(t))
        msg = await c.err("load_environment", notebook=nb, name="wire")
        assert "refused" in msg and "does not match its signature" in msg, msg
        assert await out(c, nb, PROBE) == "[]"
        assert kernel_temp_files(g) == []
        data.write_bytes(orig)

        r = await c.ok("load_environment", notebook=nb, name="wire")
        assert {"df", "square_plus", "fingerprint"} <= {v["name"] for v in r["restored"]}, r
        assert r["skipped"] == [], r
        assert await out(c, nb, "print(fingerprint())") == before
        assert await out(c, nb, "print(square_plus(5))") == "26"
        assert kernel_temp_files(g) == [], "the kernel removes the uploaded file once read"
        await c.ok("shutdown_kernel", notebook=nb)
        return before

    before = mcp.run(body)
    if kind != "kernelgateway":
        return

    # The same file loads into a local kernel (no --gateway-url), and a local save loads remotely.
    use_gateway(mcp, None)

    async def local(c):
        r = await c.ok("load_environment", notebook=nb, name="wire")
        assert "df" in {v["name"] for v in r["restored"]}, r
        assert await out(c, nb, "print(fingerprint())") == before
        k = (await c.ok("list_kernels"))["kernels"][0]
        assert "pid" in k, k  # a local kernel
        await out(c, nb, "only_local = [1, 2, 3]")
        await c.ok("save_environment", notebook=nb, name="local", variables=["only_local", "df"])
        await c.ok("shutdown_kernel", notebook=nb)

    mcp.run(local)
    use_gateway(mcp, g)

    async def back(c):
        r = await c.ok("load_environment", notebook=nb, name="local")
        assert sorted(v["name"] for v in r["restored"]) == ["df", "only_local"], r
        assert await out(c, nb, "print(only_local, df.shape)") == "[1, 2, 3] (300000, 5)"
        k = (await c.ok("list_kernels"))["kernels"][0]
        assert k["location"].startswith(g.url), k
        await c.ok("shutdown_kernel", notebook=nb)

    mcp.run(back)
    assert g.token not in (mcp.base / "server.stderr").read_text(errors="replace")
    assert kernel_temp_files(g) == []
    assert json.loads(ckpt_files(mcp.data, "local")[0].read_text())["notebook"] == nb
