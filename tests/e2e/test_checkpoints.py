"""Checkpoints (SPEC §6) with real kernels: round trip after a restart, tamper refusal,
missing packages and auto_install (a real package from PyPI), a server killed during a save,
bad names, and automatic checkpoints with the restore offer after a kernel death."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import anyio
import pytest

from conftest import REPO, Harness
from helpers import pids_mentioning, stream_text, wait_gone

VENV_PY = REPO / ".venv" / "bin" / "python"
DEP, DEP_VERSION = "tabulate", "0.9.0"


def ckpt_files(data: Path, name: str, notebook: str | None = None) -> tuple[Path, Path]:
    """(metadata, data file) of checkpoint `name`, found by reading the metadata files."""
    for meta in sorted((data / "checkpoints").glob("*/*.json")):
        if meta.name.startswith("."):
            continue
        m = json.loads(meta.read_text())
        if m["name"] == name and (notebook is None or m["notebook"] == notebook):
            return meta, meta.parent / m["data_file"]
    raise AssertionError(f"no checkpoint {name!r} under {data / 'checkpoints'}")


async def out(c, notebook: str, code: str) -> str:
    """stdout of code run in the notebook's kernel (must complete)."""
    r = await c.ok("execute_code", notebook=notebook, code=code, timeout_s=120)
    assert r["status"] == "completed", r
    return stream_text(r["outputs"]).strip()


def server_pid(h: Harness) -> int:
    """The jupyter-mcp process serving this test (its argv names the data dir)."""
    for pid in pids_mentioning(h.data):
        try:
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        except OSError:
            continue
        if argv0 == str(h.binary):
            return pid
    raise AssertionError("server process not found")


# ------------------------------------------------------------------------------------------


SETUP = """
import numpy as np, pandas as pd, hashlib
df = pd.DataFrame(np.random.default_rng(0).standard_normal((100_000, 50)),
                  columns=[f"c{i}" for i in range(50)])
df["label"] = pd.Categorical(np.where(df["c0"] > 0, "pos", "neg"))
arr = np.arange(1_000_000, dtype=np.int64).reshape(1000, 1000)
lin = np.linspace(0.0, 1.0, 12_345)
square_plus = lambda x: x * x + 1
class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
    def norm2(self):
        return self.x ** 2 + self.y ** 2
p = Point(3, 4)
nested = {"a": [1, 2, (3, 4, {"b": {5, 6}})], "c": {"d": [None, "s", 2.5]}, "e": [[], {}, ()]}
fh = open("scratch.txt", "w")
def fingerprint():
    h = hashlib.sha256(pd.util.hash_pandas_object(df, index=True).values.tobytes()).hexdigest()
    return (h, int(arr.sum()), float(lin.sum()), square_plus(3), type(p).__name__, p.norm2(),
            repr(nested), df.shape, str(df["label"].dtype))
print(fingerprint())
"""


@pytest.mark.timeout(180)
def test_round_trip_after_restart(mcp):
    nb = "rt.ipynb"

    async def body(c):
        await c.ok("create_notebook", notebook=nb)
        before = await out(c, nb, SETUP)
        s = await c.ok("save_environment", notebook=nb, name="friday")
        saved = {v["name"]: v for v in s["saved"]}
        for name in ("df", "arr", "lin", "square_plus", "Point", "p", "nested", "fingerprint", "np", "pd"):
            assert name in saved, (name, sorted(saved))
        assert saved["df"]["type"] == "pandas.DataFrame" and saved["df"]["bytes"] > 40_000_000
        assert any(pk.startswith("pandas==") for pk in saved["df"]["packages"]), saved["df"]
        skipped = {v["name"]: v["reason"] for v in s["skipped"]}
        assert "fh" in skipped and "file" in skipped["fh"], s["skipped"]
        assert s["bytes"] > 48_000_000 and len(s["sha256"]) == 64 and s["packages"] > 10
        meta, data = ckpt_files(c.data, "friday")
        assert data.stat().st_size == s["bytes"] and meta.stat().st_mode & 0o777 == 0o600

        await c.ok("restart_kernel", notebook=nb)
        assert await out(c, nb, "print('df' in globals(), 'p' in globals())") == "False False"

        r = await c.ok("load_environment", notebook=nb, name="friday")
        restored = {v["name"] for v in r["restored"]}
        assert set(saved) <= restored, (set(saved) - restored, r["skipped"])
        assert r["skipped"] == [] and r["missing_packages"] == [] and r["missing_package_variables"] == []
        after = await out(c, nb, "print(fingerprint())")
        assert after == before
        assert await out(c, nb, "print(isinstance(p, Point), 'fh' in globals(), square_plus(5))") == "True False 26"

        # list / delete
        await c.ok("save_environment", notebook=nb, name="small", variables=["nested", "missing_var"])
        lst = await c.ok("list_checkpoints", notebook=nb)
        names = [x["name"] for x in lst["checkpoints"]]
        assert names == ["small", "friday"], lst  # newest first
        assert all(x["verified"] and x["notebook"] == nb for x in lst["checkpoints"])
        small = lst["checkpoints"][0]
        assert small["variables"] == ["nested"] and small["python_version"].startswith("3.")
        everything = await c.ok("list_checkpoints")
        assert len(everything["checkpoints"]) == 2
        await c.ok("delete_checkpoint", notebook=nb, name="small")
        msg = await c.err("delete_checkpoint", notebook=nb, name="small")
        assert "list_checkpoints" in msg
        msg = await c.err("load_environment", notebook=nb, name="small")
        assert "no checkpoint named 'small'" in msg
        assert [x["name"] for x in (await c.ok("list_checkpoints", notebook=nb))["checkpoints"]] == ["friday"]
        assert not any(meta.parent.glob(".tmp-*")), "no temp files left after saves"

    mcp.run(body)


@pytest.mark.timeout(180)
def test_tampered_files_are_refused(mcp):
    nb = "t.ipynb"
    probe = "print(sorted(k for k in ('a_val', 'b_val') if k in globals()))"

    async def refused(c, name: str, expect: str = "") -> None:
        msg = await c.err("load_environment", notebook=nb, name=name)
        assert "refused" in msg and "Nothing was loaded" in msg, msg
        assert expect in msg, (expect, msg)
        assert await out(c, nb, probe) == "[]", "nothing may reach the kernel"

    async def body(c):
        await c.ok("create_notebook", notebook=nb)
        await out(c, nb, "a_val = list(range(5000))\nb_val = {'k': 'v' * 3000}")
        await c.ok("save_environment", notebook=nb, name="a", variables=["a_val"])
        await c.ok("save_environment", notebook=nb, name="b", variables=["b_val"])
        await c.ok("restart_kernel", notebook=nb)
        meta_a, data_a = ckpt_files(c.data, "a")
        meta_b, data_b = ckpt_files(c.data, "b")
        orig_data, orig_meta = data_a.read_bytes(), meta_a.read_bytes()
        orig_meta_b = meta_b.read_bytes()

        for pos in (0, len(orig_data) // 2, len(orig_data) - 1):  # one byte flipped anywhere
            t = bytearray(orig_data)
            t[pos] ^= 0x01
            data_a.write_bytes(bytes(t))
            await refused(c, "a", "does not match its signature")
        data_a.write_bytes(orig_data[:-1])
        await refused(c, "a", "truncated")
        data_a.write_bytes(orig_data + b"\0")
        await refused(c, "a", "appended")
        data_a.write_bytes(orig_data)
        for pos in (len(orig_meta) // 3, len(orig_meta) - 3):  # a byte of the metadata
            t = bytearray(orig_meta)
            t[pos] ^= 0x01
            meta_a.write_bytes(bytes(t))
            await refused(c, "a")
        # the metadata of two checkpoints swapped
        meta_a.write_bytes(orig_meta_b)
        meta_b.write_bytes(orig_meta)
        await refused(c, "a", "belongs to checkpoint 'b'")
        await refused(c, "b", "belongs to checkpoint 'a'")
        meta_a.write_bytes(orig_meta)
        meta_b.write_bytes(orig_meta_b)
        # b's data put in place of a's
        data_a.write_bytes(data_b.read_bytes())
        await refused(c, "a")
        data_a.write_bytes(orig_data)

        r = await c.ok("load_environment", notebook=nb, name="a")
        assert [v["name"] for v in r["restored"]] == ["a_val"]
        assert await out(c, nb, probe) == "['a_val']"

    mcp.run(body)

    # Another key: the same files, verified by a server with a different secret.
    mcp.env = lambda: {**Harness.env(mcp), "JUPYTER_MCP_SECRET": "ab" * 32}

    async def foreign(c):
        await c.ok("start_kernel", notebook=nb)
        await refused(c, "b", "another key")
        lst = await c.ok("list_checkpoints", notebook=nb)
        assert lst["checkpoints"] and not any(x["verified"] for x in lst["checkpoints"])

    mcp.run(foreign)
    secret = (mcp.data / "secret.key").read_bytes()
    assert len(secret) == 32 and (mcp.data / "secret.key").stat().st_mode & 0o777 == 0o600
    assert secret.hex() not in (mcp.base / "server.stderr").read_text(errors="replace")
    assert "ab" * 32 not in (mcp.base / "server.stderr").read_text(errors="replace")


def _venv_version(name: str) -> str | None:
    r = subprocess.run([str(VENV_PY), "-c", f"import importlib.metadata as m; print(m.version({name!r}))"],
                       capture_output=True, text=True, timeout=60)
    return r.stdout.strip() if r.returncode == 0 else None


def _pip(*args: str) -> None:
    subprocess.run([str(VENV_PY), "-m", "pip", *args, "--disable-pip-version-check", "-q"],
                   check=True, capture_output=True, timeout=300)


@pytest.mark.timeout(300)
def test_missing_package_reported_then_auto_installed(mcp):
    nb = "deps.ipynb"
    original = _venv_version(DEP)

    async def body(c):
        await c.ok("create_notebook", notebook=nb)
        # `render` is pickled by reference (it needs the package); dill rebuilds namedtuple
        # types by value, so `fmt` loads even without it.
        await out(c, nb, f"import {DEP}\nrender = {DEP}.tabulate\nfmt = {DEP}.simple_separated_format('|')\n"
                         "plain = 42")
        s = await c.ok("save_environment", notebook=nb, name="deps")
        render = next(v for v in s["saved"] if v["name"] == "render")
        assert f"{DEP}=={DEP_VERSION}" in render["packages"], render
        await c.ok("restart_kernel", notebook=nb)
        await anyio.to_thread.run_sync(lambda: _pip("uninstall", "-y", DEP))
        assert _venv_version(DEP) is None

        r = await c.ok("load_environment", notebook=nb, name="deps")
        missing = {m["name"]: m for m in r["missing_packages"]}
        assert DEP in missing and missing[DEP]["version"] == DEP_VERSION and not missing[DEP]["installed"], r
        assert "render" in missing[DEP]["needed_by"]
        assert {"render", DEP} == set(r["missing_package_variables"]), r
        restored = {v["name"] for v in r["restored"]}
        assert {"plain", "fmt"} <= restored and "render" not in restored, r
        reason = next(v["reason"] for v in r["skipped"] if v["name"] == "render")
        assert f"{DEP}=={DEP_VERSION}" in reason and "auto_install" in reason

        r = await c.ok("load_environment", notebook=nb, name="deps", auto_install=True, timeout_s=600)
        missing = {m["name"]: m for m in r["missing_packages"]}
        assert missing[DEP]["installed"], r
        restored = {v["name"] for v in r["restored"]}
        assert {"render", "fmt", "plain", DEP} <= restored, r
        assert r["missing_package_variables"] == [] and r["skipped"] == []
        assert await out(c, nb, "print(render([[1, 2]], tablefmt='plain'), plain)") == "1  2 42"
        assert _venv_version(DEP) == DEP_VERSION

    try:
        if original != DEP_VERSION:
            _pip("install", f"{DEP}=={DEP_VERSION}")
        mcp.run(body)
    finally:  # leave the venv as it was
        if original is None:
            if _venv_version(DEP) is not None:
                _pip("uninstall", "-y", DEP)
        elif _venv_version(DEP) != original:
            _pip("install", f"{DEP}=={original}")


@pytest.mark.timeout(240)
@pytest.mark.parametrize("when", ["kernel_writing", "server_committing"])
def test_server_killed_during_save_keeps_previous(mcp, when):
    """kill -9 of the server in the middle of replacing checkpoint "ck": while the kernel
    writes the new data (the previous checkpoint must survive), or once the kernel is done,
    while the server hashes, fsyncs and renames (the previous or the new one, never a mix)."""
    nb = "crash.ipynb"
    state: dict = {}

    async def body(c):
        await c.ok("create_notebook", notebook=nb)
        await c.ok("start_kernel", notebook=nb)
        await out(c, nb, "v = 1")
        await c.ok("save_environment", notebook=nb, name="ck")
        meta, _ = ckpt_files(c.data, "ck")
        state["meta"] = meta.read_bytes()
        await out(c, nb, "import numpy as np\nv = 2\nbig = np.random.default_rng(1).standard_normal(40_000_000)")
        pid = server_pid(mcp)

        async def save():
            try:
                await c.session.call_tool("save_environment", {"notebook": nb, "name": "ck"},
                                          read_timeout_seconds=20)
            except Exception as exc:  # the server is killed under it
                state["save_error"] = repr(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(save)
            with anyio.fail_after(30):
                temps: list[Path] = []
                while not temps:
                    temps = list(meta.parent.glob(".tmp-*.dill"))
                    await anyio.sleep(0.002)
                if when == "server_committing":
                    # the kernel has written 320 MB once the file stops growing (or is renamed)
                    last, stable = -1, 0
                    while stable < 3:
                        try:
                            size = temps[0].stat().st_size
                        except FileNotFoundError:
                            break
                        stable = stable + 1 if size == last and size > 300_000_000 else 0
                        last = size
                        await anyio.sleep(0.005)
            os.kill(pid, signal.SIGKILL)
            state["killed"] = True

    try:
        mcp.run(body)
    except Exception as exc:
        if not state.get("killed"):
            raise
        state["run_error"] = repr(exc)
    assert state.get("killed")
    meta, data = ckpt_files(mcp.data, "ck")
    if when == "kernel_writing":
        assert meta.read_bytes() == state["meta"], "the old metadata is still the committed one"

    async def after(c):
        r = await c.ok("load_environment", notebook=nb, name="ck")
        names = sorted(v["name"] for v in r["restored"])
        v = await out(c, nb, "print(v)")
        if when == "kernel_writing" or names == ["v"]:
            assert names == ["v"] and v == "1", (names, v)
        else:  # the new checkpoint was committed before the kill: all of it
            assert names == ["big", "np", "v"] and v == "2", (names, v)
            assert await out(c, nb, "print(big.shape)") == "(40000000,)"
        state["outcome"] = names
        # a save after the crash replaces it normally
        await out(c, nb, "v = 3")
        await c.ok("save_environment", notebook=nb, name="ck", variables=["v"])
        await c.ok("restart_kernel", notebook=nb)
        await c.ok("load_environment", notebook=nb, name="ck")
        assert await out(c, nb, "print(v)") == "3"

    mcp.run(after)
    print("outcome:", state["outcome"])


@pytest.mark.timeout(120)
def test_bad_names_are_refused(mcp):
    async def body(c):
        await c.ok("create_notebook", notebook="n.ipynb")
        await out(c, "n.ipynb", "x = 1")
        for bad in ("../x", "", "x" * 300, "a/b", "a\\b", "..", "nul\0byte", "line\nbreak"):
            for tool, extra in (("save_environment", {}), ("load_environment", {}), ("delete_checkpoint", {})):
                msg = await c.err(tool, notebook="n.ipynb", name=bad, **extra)
                assert "invalid checkpoint name" in msg, (tool, bad, msg)
        msg = await c.err("save_environment", notebook="../outside.ipynb", name="ok")
        assert "outside" in msg
        assert not (c.data / "checkpoints").exists() or not any((c.data / "checkpoints").rglob("*.dill"))
        s = await c.ok("save_environment", notebook="n.ipynb", name="x" * 128)
        assert s["saved"][0]["name"] == "x"

    mcp.run(body)


@pytest.mark.timeout(180)
def test_auto_checkpoint_idle_shutdown_and_restore_offer(mcp):
    nb = "auto.ipynb"
    mcp.extra_args = ["--auto-checkpoint", "--auto-checkpoint-idle", "1s"]

    seen: set[str] = set()

    async def wait_auto(c, var: str) -> dict:
        """The next new automatic checkpoint holding `var`."""
        with anyio.fail_after(30):
            while True:
                lst = await c.ok("list_checkpoints", notebook=nb)
                for ck in lst["checkpoints"]:
                    if ck["name"].startswith("auto-") and var in ck["variables"] and ck["name"] not in seen:
                        seen.add(ck["name"])
                        return ck
                await anyio.sleep(0.5)

    async def body(c):
        await c.ok("create_notebook", notebook=nb)
        await out(c, nb, "x = 41\ny = [1, 2]")
        first = await wait_auto(c, "x")
        assert first["name"] == "auto-1" and set(first["variables"]) == {"x", "y"}
        await out(c, nb, "x = 42")
        second = await wait_auto(c, "x")
        assert second["name"] == "auto-2"
        await anyio.sleep(3)  # idle again, nothing new ran: no further checkpoint
        names = {x["name"] for x in (await c.ok("list_checkpoints", notebook=nb))["checkpoints"]}
        assert names == {"auto-1", "auto-2"}, names

        pid = (await c.kernel_pids())[nb]
        os.kill(pid, signal.SIGKILL)
        assert await wait_gone(pid, 10)
        with anyio.fail_after(20):  # the server notices the death
            while True:
                mine = [k for k in (await c.ok("list_kernels"))["kernels"] if k["notebook"] == nb]
                if not mine or mine[0]["state"] == "dead":
                    break
                await anyio.sleep(0.1)
        r = await c.ok("execute_code", notebook=nb, code="print('fresh')")
        note = r.get("kernel_note") or ""
        assert "load_environment" in note and "'auto-2'" in note, r
        await c.ok("load_environment", notebook=nb, name="auto-2")
        assert await out(c, nb, "print(x, y)") == "42 [1, 2]"

    mcp.run(body)

    # Graceful shutdown saves what ran since the last automatic checkpoint.
    mcp.extra_args = ["--auto-checkpoint", "--auto-checkpoint-idle", "1h"]

    async def before_shutdown(c):
        await out(c, nb, "z = 7")

    mcp.run(before_shutdown)
    mcp.extra_args = []

    async def after(c):
        lst = await c.ok("list_checkpoints", notebook=nb)
        newest = lst["checkpoints"][0]  # newest first
        assert newest["name"].startswith("auto-") and newest["variables"] == ["z"], lst
        # three rolling slots, the oldest overwritten (run 1 also saved at its shutdown)
        assert {x["name"] for x in lst["checkpoints"]} == {"auto-1", "auto-2", "auto-3"}, lst

    mcp.run(after)
