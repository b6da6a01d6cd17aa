"""Bad input is a tool error (isError) whose message says what to do, and never damages files."""

from __future__ import annotations

import json
import os
import shutil

import nbformat
import pytest

from helpers import read_nb, text_of, write_nb


@pytest.mark.timeout(60)
def test_invalid_json_notebook(mcp):
    path = mcp.root / "broken.ipynb"
    path.write_bytes(b'{"cells": [{"cell_type": "code", "source": "1+1",\n')
    before = path.read_bytes()

    async def body(c):
        msg = await c.err("read_notebook", notebook="broken.ipynb")
        assert "broken.ipynb" in msg, msg
        msg = await c.err("execute_cell", notebook="broken.ipynb", index=0)
        assert "broken.ipynb" in msg, msg
        msg = await c.err("insert_cell", notebook="broken.ipynb", source="x = 1")
        assert "broken.ipynb" in msg, msg
        await c.err("run_all_cells", notebook="broken.ipynb")
        # The server keeps answering.
        await c.ok("create_notebook", notebook="fine.ipynb")

    mcp.run(body)
    assert path.read_bytes() == before, "an unparsable notebook must be left byte for byte"


@pytest.mark.timeout(60)
def test_nbformat_v3_notebook_refused(mcp):
    path = mcp.root / "old.ipynb"
    v3 = nbformat.v3
    nb = v3.new_notebook(worksheets=[v3.new_worksheet(cells=[v3.new_code_cell(input="1+1")])])
    nb.metadata["name"] = "old"
    path.write_text(v3.writes_json(nb))
    before = path.read_bytes()
    assert json.loads(before)["nbformat"] == 3

    async def body(c):
        msg = await c.err("read_notebook", notebook="old.ipynb")
        low = msg.lower()
        assert "old.ipynb" in msg, msg
        assert "nbformat" in low or "version" in low or "v3" in low, msg
        await c.err("execute_cell", notebook="old.ipynb", index=0)
        await c.err("insert_cell", notebook="old.ipynb", source="2+2")

    mcp.run(body)
    assert path.read_bytes() == before


@pytest.mark.timeout(60)
def test_unknown_cell_id(mcp):
    path = mcp.root / "ids.ipynb"
    write_nb(path, [("code", "1 + 1")])
    before = path.read_bytes()

    async def body(c):
        for tool, extra in (("execute_cell", {}), ("edit_cell", {"source": "x"}),
                            ("delete_cell", {}), ("move_cell", {"index": 0})):
            msg = await c.err(tool, notebook="ids.ipynb", cell_id="no-such-cell", **extra)
            assert "no-such-cell" in msg, msg
            assert "read_notebook" in msg, f"{tool}: the message should point at read_notebook: {msg}"
        msg = await c.err("insert_cell", notebook="ids.ipynb", source="x", after_cell_id="no-such-cell")
        assert "no-such-cell" in msg
        msg = await c.err("execute_cell", notebook="ids.ipynb", index=7)
        assert "7" in msg, msg
        msg = await c.err("get_execution", execution_id="no-such-execution")
        assert "no-such-execution" in msg
        msg = await c.err("read_notebook", notebook="missing.ipynb")
        assert "missing.ipynb" in msg

    mcp.run(body)
    assert path.read_bytes() == before


@pytest.mark.timeout(60)
def test_kernelspec_not_installed(mcp, corpus):
    path = mcp.root / "notebook_jl.ipynb"
    shutil.copyfile(corpus / "nbconvert" / "notebook_jl.ipynb", path)
    before = path.read_bytes()

    async def body(c):
        for tool, extra in (("execute_cell", {"index": 0}), ("start_kernel", {}), ("run_all_cells", {})):
            msg = await c.err(tool, notebook="notebook_jl.ipynb", **extra)
            assert "julia-0.4" in msg, f"{tool}: the error must name the missing kernelspec: {msg}"
            assert "python3" in msg, f"{tool}: the error must list the installed kernelspecs: {msg}"
        ks = await c.ok("list_kernels")
        assert not [k for k in ks["kernels"] if k["notebook"].endswith("notebook_jl.ipynb")]

    mcp.run(body)
    assert path.read_bytes() == before


@pytest.mark.timeout(60)
def test_paths_outside_root_refused(mcp, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    write_nb(outside / "secret.ipynb", [("code", "print('outside')")])
    secret_before = (outside / "secret.ipynb").read_bytes()
    os.symlink(outside, mcp.root / "link")  # a directory symlink inside the root
    os.symlink(outside / "secret.ipynb", mcp.root / "evil.ipynb")  # a file symlink inside the root

    async def body(c):
        attempts = [
            ("create_notebook", {"notebook": "../x.ipynb"}),
            ("create_notebook", {"notebook": "sub/../../x.ipynb"}),
            ("create_notebook", {"notebook": str(outside / "abs.ipynb")}),
            ("create_notebook", {"notebook": "link/via-link.ipynb"}),
            ("read_notebook", {"notebook": "../outside/secret.ipynb"}),
            ("read_notebook", {"notebook": str(outside / "secret.ipynb")}),
            ("read_notebook", {"notebook": "link/secret.ipynb"}),
            ("read_notebook", {"notebook": "evil.ipynb"}),
            ("execute_cell", {"notebook": "evil.ipynb", "index": 0}),
            ("execute_code", {"notebook": "../outside/secret.ipynb", "code": "1"}),
            ("insert_cell", {"notebook": "link/secret.ipynb", "source": "print('pwned')"}),
            ("list_notebooks", {"dir": ".."}),
            ("list_notebooks", {"dir": "link"}),
        ]
        for tool, args in attempts:
            sc, res = await c.call(tool, **args)
            assert res.is_error, f"{tool}({args}) escaped the root: {sc}"
            msg = text_of(res)
            assert "print('outside')" not in msg, "content from outside the root leaked"
            assert "root" in msg.lower() or "outside" in msg.lower(), f"{tool}({args}): unclear message {msg!r}"
        ks = await c.ok("list_kernels")
        assert ks["kernels"] == [], "no kernel may start for a refused path"

    mcp.run(body)
    assert not (tmp_path / "x.ipynb").exists()
    assert not (outside / "abs.ipynb").exists()
    assert not (outside / "via-link.ipynb").exists()
    assert (outside / "secret.ipynb").read_bytes() == secret_before
    assert sorted(p.name for p in outside.iterdir()) == ["secret.ipynb"]


@pytest.mark.timeout(60)
def test_create_notebook_never_overwrites(mcp):
    path = mcp.root / "exists.ipynb"
    write_nb(path, [("code", "1")])
    before = path.read_bytes()

    async def body(c):
        msg = await c.err("create_notebook", notebook="exists.ipynb")
        assert "exists.ipynb" in msg, msg

    mcp.run(body)
    assert path.read_bytes() == before
    assert len(read_nb(path).cells) == 1
