"""A kernel cannot wedge its queue (issue 9 item 7) and kernels start in parallel (issue 8
item 11): bytes that are not UTF-8 in kernel messages, a request the kernel finishes without a
reply (what ipykernel does when a SIGINT lands before the cell starts), an interrupt that
arrives right after execute_code, and a kernel that is slow to come up next to a fast one.

The "no reply" case is made deterministic by patching the live ipykernel's execute_request
handler to raise KeyboardInterrupt for marked code, exactly where a badly timed SIGINT raises
it; everything else is the real kernel and the real server.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
import pytest

from helpers import stream_text

# Installs, in the kernel, a handler that behaves as ipykernel does when SIGINT arrives after
# it took an execute_request but before the cell started: KeyboardInterrupt in the dispatcher,
# which logs it, publishes `status: idle`, and never sends an execute_reply.
PATCH = """
_k = get_ipython().kernel
_orig_execute_request = _k.shell_handlers['execute_request']
def _no_reply(stream, idents, msg, _orig=_orig_execute_request):
    if ('WEDGE' + '_ME') in msg['content'].get('code', ''):
        raise KeyboardInterrupt
    return _orig(stream, idents, msg)
_k.shell_handlers['execute_request'] = _no_reply
"""


@pytest.mark.timeout(180)
def test_non_utf8_bytes_are_decoded_lossily_not_dropped(mcp):
    async def body(c):
        await c.ok("create_notebook", notebook="u.ipynb")
        out = await c.ok("execute_code", notebook="u.ipynb", code="print('a\\udcffb')", timeout_s=60)
        assert out["status"] == "completed", out
        assert stream_text(out["outputs"]) == "a\ufffdb\n", out["outputs"]

        # The error reply itself carries the byte: it must still settle the execution.
        code = "raise FileNotFoundError('no file ' + b'x\\xe9'.decode('utf-8', 'surrogateescape'))"
        err = await c.ok("execute_code", notebook="u.ipynb", code=code, timeout_s=60)
        assert err["status"] == "failed", err
        assert err["error"]["ename"] == "FileNotFoundError", err
        assert "\ufffd" in err["error"]["evalue"], err

        again = await c.ok("execute_code", notebook="u.ipynb", code="1+1", timeout_s=60)
        assert again["status"] == "completed", "the queue is not wedged"

    mcp.run(body)


@pytest.mark.timeout(180)
def test_a_request_finished_without_reply_settles_and_the_queue_goes_on(mcp):
    async def body(c):
        await c.ok("create_notebook", notebook="w.ipynb")
        p = await c.ok("execute_code", notebook="w.ipynb", code=PATCH, timeout_s=60)
        assert p["status"] == "completed", p

        w = await c.ok("execute_code", notebook="w.ipynb", code="# WEDGE_ME\n1", timeout_s=60)
        assert w["status"] == "failed", f"settled from idle + barrier, not left running: {w}"
        assert w["error"]["ename"] == "NoReply", w

        # Interrupted before it started: recorded as interrupted.
        sc = await c.ok("execute_code", notebook="w.ipynb", code="import time\ntime.sleep(30)",
                        timeout_s=0)
        await c.ok("interrupt_kernel", notebook="w.ipynb")
        done = await c.wait_done(sc["execution_id"], timeout=60)
        assert done["status"] == "interrupted", done

        # An internal run (list_variables) hitting the same kernel behaviour ends at once.
        internal = PATCH.replace("'WEDGE' + '_ME'", "'__jmcp' + '_list_variables'")
        await c.ok("execute_code", notebook="w.ipynb", code=internal, timeout_s=60)
        sc, res = await c.call("list_variables", notebook="w.ipynb")
        text = json.dumps(sc) if sc else str(res.content)
        assert "did not finish" not in text, f"waited for a reply that never comes: {text}"

        ok = await c.ok("execute_code", notebook="w.ipynb", code="40+2", timeout_s=60)
        assert ok["status"] == "completed", ok

    mcp.run(body)


@pytest.mark.timeout(300)
def test_interrupt_right_after_execute_code_takes_effect(mcp):
    async def body(c):
        await c.ok("create_notebook", notebook="i.ipynb")
        await c.ok("start_kernel", notebook="i.ipynb")
        for n in range(5):
            sc = await c.ok("execute_code", notebook="i.ipynb",
                            code=f"import time\ntime.sleep(600)  # round {n}", timeout_s=0)
            await c.ok("interrupt_kernel", notebook="i.ipynb")
            done = await c.wait_done(sc["execution_id"], timeout=60)
            assert done["status"] == "interrupted", f"round {n}: {done}"
        ok = await c.ok("execute_code", notebook="i.ipynb", code="1+1", timeout_s=60)
        assert ok["status"] == "completed", ok

    mcp.run(body)


@pytest.mark.timeout(240)
def test_a_slow_kernel_start_does_not_hold_up_another(mcp, tmp_path: Path):
    """A kernelspec whose argv waits on a FIFO before exec'ing ipykernel: while it waits,
    another notebook's kernel must come up (the launch lock used to be held until connect)."""
    import sys

    fifo = tmp_path / "go.fifo"
    os.mkfifo(fifo)
    kdir = tmp_path / "jupyter" / "kernels" / "slowpy"
    kdir.mkdir(parents=True)
    (kdir / "kernel.json").write_text(json.dumps({
        "argv": ["sh", "-c", f'read _ < "{fifo}"; exec "$0" -m ipykernel_launcher -f "$1"',
                 sys.executable, "{connection_file}"],
        "display_name": "slow python",
        "language": "python",
    }))
    env = mcp.env()
    env["JUPYTER_PATH"] = str(tmp_path / "jupyter")
    mcp.env = lambda: env

    async def body(c):
        await c.ok("create_notebook", notebook="slow.ipynb")
        await c.ok("create_notebook", notebook="fast.ipynb")
        slow_result: dict = {}

        async def start_slow():
            slow_result["sc"] = await c.call("start_kernel", notebook="slow.ipynb",
                                             kernel_name="slowpy")

        async with anyio.create_task_group() as tg:
            tg.start_soon(start_slow)
            # The slow kernel is launched once its sh process exists (it waits on the FIFO).
            while not any(f"{fifo}" in a for a in _cmdlines()):
                await anyio.sleep(0.05)
            fast = await c.ok("start_kernel", notebook="fast.ipynb")
            assert fast["state"] in ("idle", "busy"), fast
            assert "sc" not in slow_result, "the slow kernel is still starting"
            with open(fifo, "w") as f:  # let it go
                f.write("go\n")
        sc, res = slow_result["sc"]
        assert not res.is_error, res
        assert sc["state"] in ("idle", "busy"), sc

    mcp.run(body)


def _cmdlines() -> list[str]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                out.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                pass
    return out
