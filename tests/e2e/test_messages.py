"""Error and status messages say what happened in plain words (issue 9 item 14): argument
errors name the argument and a plain type, a dangling symlink gets the same answer from every
tool, kernel views show plain PIDs, a missing kernel is said so, NaN written by Python's json
in notebook metadata is read, and the CLI's own errors and help say what to do."""

from __future__ import annotations

import os
import subprocess

from conftest import BINARY
from helpers import text_of


def test_tool_messages_are_plain(mcp):
    os.symlink("/nonexistent/x.ipynb", mcp.root / "dang.ipynb")
    # Python's json module writes NaN for float('nan'); JupyterLab reads such files.
    (mcp.root / "nan.ipynb").write_text(
        '{"cells": [], "metadata": {"x": NaN}, "nbformat": 4, "nbformat_minor": 5}')

    async def body(c):
        out = {}
        out["float"] = await c.err("read_notebook", notebook=1.5)
        out["string_for_number"] = await c.err("execute_code", notebook="a.ipynb", code="1",
                                               timeout_s="x")
        out["dangling_read"] = await c.err("read_notebook", notebook="dang.ipynb")
        out["dangling_create"] = await c.err("create_notebook", notebook="dang.ipynb")
        out["no_kernel"] = await c.err("shutdown_kernel", notebook="k2.ipynb")
        _, res = await c.call("read_notebook", notebook="nan.ipynb")
        out["nan"] = (res.is_error, text_of(res))
        await c.ok("create_notebook", notebook="k.ipynb")
        await c.ok("execute_code", notebook="k.ipynb", code="1", timeout_s=60)
        _, res = await c.call("list_kernels")
        out["list"] = text_of(res)
        return out

    out = mcp.run(body)
    assert "argument `notebook` must be a string, got the number 1.5" in out["float"], out
    assert "argument `timeout_s` must be a number" in out["string_for_number"], out
    assert "got the string" in out["string_for_number"], out
    assert out["dangling_read"] == out["dangling_create"], out
    assert "outside the notebook root" in out["dangling_read"], out
    assert "no kernel is running for 'k2.ipynb'" in out["no_kernel"], out
    assert "none (pid -)" not in out["no_kernel"], out
    assert out["nan"][0] is False, out
    assert "Some(" not in out["list"] and "(pid " in out["list"], out


def test_cli_messages_say_what_to_do(tmp_path):
    missing = tmp_path / "missing"
    proc = subprocess.run([str(BINARY), "serve", "--root", str(missing), "--data-dir",
                           str(tmp_path / "data")], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=30)
    assert proc.returncode != 0
    assert "create the folder or pass an existing one with --root" in proc.stderr, proc.stderr
    assert proc.stderr.count("No such file or directory") == 1, proc.stderr
    help_text = subprocess.run([str(BINARY), "run", "--help"], capture_output=True, text=True,
                               timeout=30).stdout
    assert "overriding the kernelspec its metadata names" in help_text, help_text
