"""`/events` (SPEC §7, issue 10 item 3): a WebSocket client of the daemon sees an execution's
status changes, its outputs (bounded) and its kernel's states; `?notebook=` filters; a client
that completes the handshake and never reads (while a cell prints 20,000 lines) slows nobody:
the fast client gets every event in order or a `lagged` marker, the cell completes, and the
stalled client is disconnected and counted.

The WebSocket client is a minimal RFC 6455 reader over a raw socket (the venv has no
WebSocket library; server-to-client frames are unmasked, and these clients send nothing)."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
from urllib.parse import urlsplit

import pytest

from daemon import Daemon, module_daemon, tool_json, wait_for


def handshake(d: Daemon, path: str, rcvbuf: int | None = None) -> tuple[socket.socket, bytes, bytes]:
    """Opens a WebSocket; returns (socket, status line, bytes after the response head)."""
    u = urlsplit(d.base_url)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # before connect: it bounds the window the server may fill
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect((u.hostname, u.port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               f"Authorization: Bearer {d.token}\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return s, head.split(b"\r\n")[0], rest


class Reader:
    """A client that reads every message into `messages` (a thread)."""

    def __init__(self, d: Daemon, path: str) -> None:
        self.sock, status, self.buf = handshake(d, path)
        assert b" 101 " in status, status
        self.messages: list[dict] = []
        self.closed = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _need(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _run(self) -> None:
        try:
            while True:
                b0, b1 = self._need(2)
                n = b1 & 0x7F
                if n == 126:
                    n = int.from_bytes(self._need(2), "big")
                elif n == 127:
                    n = int.from_bytes(self._need(8), "big")
                payload = self._need(n)
                if b0 & 0x0F == 8:
                    break
                if b0 & 0x0F == 1:
                    self.messages.append(json.loads(payload))
        except (EOFError, OSError):
            pass
        self.closed = True

    def close(self) -> None:
        # shutdown first: close() alone waits for the reader thread's recv to return.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(10)


def call(d: Daemon, sid: str, tool: str, **args) -> dict:
    r = d.rpc(sid, "tools/call", {"name": tool, "arguments": args}, id=tool)
    assert not r["result"].get("isError"), r
    return tool_json(r)


def metric(d: Daemon, name: str) -> float:
    text = d.get("/metrics", headers=d.auth()).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics:\n{text}")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    yield from module_daemon(tmp_path_factory, "events")


@pytest.mark.timeout(120)
def test_a_subscriber_sees_statuses_outputs_and_kernel_states(daemon: Daemon):
    d = daemon
    _, status, _ = handshake(d, "/events?notebook=../outside.ipynb")
    assert b" 400 " in status, "a notebook filter the tools would refuse is refused"
    u = urlsplit(d.base_url)
    raw = socket.create_connection((u.hostname, u.port))
    raw.sendall(f"GET /events HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    assert b" 401 " in raw.recv(4096).split(b"\r\n")[0], "no token: 401"
    raw.close()

    mine = Reader(d, "/events?notebook=ev.ipynb")
    other = Reader(d, f"/events?notebook=other.ipynb&token={d.token}")
    everything = Reader(d, "/events")
    sid = d.initialize()
    for nb in ("ev.ipynb", "other.ipynb"):
        call(d, sid, "create_notebook", notebook=nb)
    r = call(d, sid, "execute_code", notebook="ev.ipynb", code="print('hi')\n1 + 1")
    assert r["status"] == "completed", r
    xid = r["execution_id"]

    def done(reader):
        return any(m.get("execution_id") == xid and m.get("status") == "completed" for m in reader.messages)

    wait_for(lambda: done(mine) and done(everything), 30, "the completed event")
    msgs = mine.messages
    assert all(m.get("notebook") == "ev.ipynb" for m in msgs), msgs
    assert [m["status"] for m in msgs if m["type"] == "execution"] == ["pending", "running", "completed"]
    completed = [m for m in msgs if m["type"] == "execution"][-1]
    assert completed["execution_count"] == r["execution_count"] and "cell_id" not in completed
    assert completed["at"].endswith("Z") and "T" in completed["at"]
    kernel = [m for m in msgs if m["type"] == "kernel"]
    assert [k["state"] for k in kernel] == ["starting", "idle", "busy", "idle"], kernel
    assert all(isinstance(k["pid"], int) for k in kernel[1:])
    outputs = [m["output"] for m in msgs if m["type"] == "output"]
    assert [(o["output_type"], o.get("text")) for o in outputs] == [("stream", "hi\n"), ("execute_result", "2")]
    assert all(m["execution_id"] == xid for m in msgs if m["type"] == "output")

    # The filtered-out client saw none of it; it sees its own notebook's events.
    r2 = call(d, sid, "execute_code", notebook="other.ipynb", code="3")
    wait_for(lambda: any(m.get("status") == "completed" for m in other.messages), 30, "other's events")
    assert other.messages and all(m["notebook"] == "other.ipynb" for m in other.messages)
    assert any(m.get("execution_id") == r2["execution_id"] for m in other.messages)
    for reader in (mine, other, everything):
        reader.close()


@pytest.mark.timeout(180)
def test_a_stalled_client_slows_nobody_and_is_disconnected(daemon: Daemon):
    d = daemon
    disconnected_before = metric(d, "events_disconnected_total")
    dropped_before = metric(d, "events_dropped_total")
    # Completes the handshake, then never reads; a small receive window fills fast.
    stalled, status, _ = handshake(d, "/events", rcvbuf=4096)
    assert b" 101 " in status
    fast = Reader(d, "/events?notebook=flood.ipynb")
    sid = d.initialize()
    call(d, sid, "create_notebook", notebook="flood.ipynb")
    code = "for i in range(20000):\n    print(f'{i:05d} ' + 'x' * 600, flush=True)"
    r = call(d, sid, "execute_code", notebook="flood.ipynb", code=code, timeout_s=150)
    assert r["status"] == "completed", r
    xid = r["execution_id"]
    wait_for(lambda: any(m.get("execution_id") == xid and m.get("status") == "completed"
                         for m in fast.messages), 60, "the fast client's completed event")

    # Every event in order, or a lagged marker where some were dropped for this client.
    last, lines, gaps_explained = -1, 0, True
    lagged = 0
    for m in fast.messages:
        if m["type"] == "lagged":
            assert m["dropped"] > 0
            lagged += m["dropped"]
            last = None  # anything may follow
            continue
        if m["type"] != "output":
            continue
        cut = "truncated" in m["output"]  # a batch over the text bound: head and tail
        for line in m["output"]["text"].splitlines():
            if not (line[:5].isdigit() and line[5:6] == " "):
                last = None  # the marker line of a cut text: lines were left out here
                continue
            n = int(line[:5])
            if last is not None and n != last + 1:
                gaps_explained = False
            last = n
            lines += 1
        if cut:
            lagged += 1
            last = None
    assert gaps_explained, "lines out of order or missing without a lagged marker"
    assert lines == 20000 or lagged > 0, (lines, lagged)
    statuses = [m["status"] for m in fast.messages if m.get("execution_id") == xid and m["type"] == "execution"]
    assert statuses[-1] == "completed"

    # The stalled client is disconnected (send timeout or stall limit) and counted.
    wait_for(lambda: metric(d, "events_disconnected_total") > disconnected_before, 60,
             "the stalled client to be disconnected")
    assert metric(d, "events_dropped_total") > dropped_before
    wait_for(lambda: metric(d, "events_clients") == 1, 30,
             f"only the fast client left (events_clients {metric(d, 'events_clients')})")
    fast.close()
    stalled.close()


def replay(messages: list[dict]) -> dict[str, list[dict]]:
    """What a UI following /events shows: execution id -> outputs, applying `clear_output`
    (with `wait`), `update_display` and display ids across cells, and merging consecutive
    streams of one name, as the README's /events section says."""
    cells: dict[str, list[dict]] = {}
    wait: set[str] = set()

    def update(display_id: str, new: dict) -> None:
        for outs in cells.values():
            for o in outs:
                if o.get("_display_id") == display_id:
                    for k in ("text", "mime_types", "truncated"):
                        o.pop(k, None)
                        if k in new:
                            o[k] = new[k]

    for m in messages:
        x = m.get("execution_id")
        if m["type"] == "clear_output":
            if m["wait"]:
                wait.add(x)
            else:
                cells[x] = []
        elif m["type"] == "update_display":
            update(m["display_id"], m["output"])
        elif m["type"] == "output":
            outs = cells.setdefault(x, [])
            if x in wait:
                wait.discard(x)
                outs.clear()
            o = dict(m["output"])
            if "display_id" in m:
                update(m["display_id"], o)
                o["_display_id"] = m["display_id"]
            last = outs[-1] if outs else None
            if (o["output_type"] == "stream" and last and last["output_type"] == "stream"
                    and last["name"] == o["name"]):
                last["text"] += o["text"]
            else:
                outs.append(o)
    return cells


def shown(outputs: list[dict]) -> list[tuple]:
    return [(o["output_type"], o.get("name"), o.get("text")) for o in outputs]


@pytest.mark.timeout(120)
def test_a_ui_following_events_ends_with_the_saved_outputs(daemon: Daemon):
    """clear_output (now and with wait), display ids updated in the same cell and from
    another cell, interleaved stdout/stderr: replaying /events gives the saved cells' outputs.
    Internal runs (list_variables) report busy/idle; a kernel killed by -9 counts in
    kernels{state="dead"} until the notebook starts another."""
    import asyncio

    d = daemon
    ui = Reader(d, "/events?notebook=ui.ipynb")
    cell_a = "\n".join([
        "from IPython.display import display, clear_output",
        "import sys",
        "print('gone', flush=True)",
        "clear_output()",
        "print('replaced soon', flush=True)",
        "clear_output(wait=True)",
        "print('a', flush=True)",
        "h = display({'text/plain': 'v1'}, raw=True, display_id=True)",
        "print('err', file=sys.stderr, flush=True)",
        "h.update({'text/plain': 'v2'}, raw=True)",
        "print('b', flush=True)",
        "'result'",
    ])
    cell_b = "h.update({'text/plain': 'from b'}, raw=True)\nprint('b done')"

    async def body() -> tuple[list, list[str]]:
        async with d.session() as s:
            made = await s.call_tool("create_notebook", {"notebook": "ui.ipynb", "cells": [
                {"cell_type": "code", "source": cell_a}, {"cell_type": "code", "source": cell_b}]})
            assert not made.is_error, made
            ids = made.structured_content["cell_ids"]
            xids = []
            for cid in ids:
                r = await s.call_tool("execute_cell", {"notebook": "ui.ipynb", "cell_id": cid})
                assert r.structured_content["status"] == "completed", r
                xids.append(r.structured_content["execution_id"])
            listed = await s.call_tool("list_variables", {"notebook": "ui.ipynb"})
            assert not listed.is_error, listed
            nb = await s.call_tool("read_notebook", {"notebook": "ui.ipynb", "outputs": "full"})
            assert not nb.is_error, nb
            return nb.structured_content["cells"], xids

    cells, xids = asyncio.run(body())
    wait_for(lambda: any(m.get("execution_id") == xids[1] and m.get("status") == "completed"
                         for m in ui.messages), 30, "cell B's completed event")
    # list_variables (the server's own code) ran after cell B: busy and idle follow B's end.
    def after_b() -> list[str]:
        msgs = list(ui.messages)
        end = next(i for i, m in enumerate(msgs) if m.get("execution_id") == xids[1]
                   and m.get("status") == "completed")
        return [m["state"] for m in msgs[end:] if m["type"] == "kernel"]

    wait_for(lambda: after_b() == ["busy", "idle"], 30, "busy/idle of the internal run")
    types = {m["type"] for m in ui.messages}
    assert {"clear_output", "update_display"} <= types, types
    assert any(m["type"] == "clear_output" and m["wait"] for m in ui.messages)
    replayed = replay(ui.messages)
    saved = [c["outputs"] for c in cells]
    assert shown(saved[0]) == [("stream", "stdout", "a\n"), ("display_data", None, "from b"),
                               ("stream", "stderr", "err\n"), ("stream", "stdout", "b\n"),
                               ("execute_result", None, "'result'")], saved[0]
    assert shown(replayed[xids[0]]) == shown(saved[0]), (replayed, saved)
    assert shown(replayed[xids[1]]) == shown(saved[1]), (replayed, saved)

    # kill -9 of the kernel: counted dead (gauge and event) until the notebook gets another.
    dead_before = metric(d, 'kernels{state="dead"}')
    sid = d.initialize()
    kernels = call(d, sid, "list_kernels")["kernels"]
    pid = next(k["pid"] for k in kernels if k["notebook"] == "ui.ipynb")
    os.kill(pid, 9)
    wait_for(lambda: metric(d, 'kernels{state="dead"}') == dead_before + 1, 30, "the dead gauge")
    wait_for(lambda: any(m["type"] == "kernel" and m["state"] == "dead" for m in ui.messages), 30,
             "the dead kernel event")
    r = call(d, sid, "execute_code", notebook="ui.ipynb", code="1")
    assert r["status"] == "completed", r
    assert metric(d, 'kernels{state="dead"}') == dead_before, "replaced by the new kernel"
    ui.close()
