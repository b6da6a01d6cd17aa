"""Notebooks as other projects write them (issue 8 items 13-16, SPEC section 4): exact floats
and Python's NaN through a read and a write, interleaved stdout/stderr kept in arrival order,
live widget state saved into metadata.widgets as nbclient does, kernel metadata for a notebook
with nothing to run, and a non-Python kernel (bash_kernel) through the same tools."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import nbformat
import pytest

from helpers import nbclient_execute, read_nb, validate_file, write_nb

WIDGET_MIME = "application/vnd.jupyter.widget-state+json"


def wait_file(path: Path, ready, timeout: float = 10.0):
    """The write-back may trail the report by at most one batch delay (500 ms)."""
    deadline = time.monotonic() + timeout
    while True:
        nb = validate_file(path)
        if ready(nb) or time.monotonic() > deadline:
            return nb
        time.sleep(0.1)


@pytest.mark.timeout(120)
def test_floats_and_nan_survive_read_and_write(mcp):
    path = mcp.root / "floats.ipynb"
    write_nb(path, [("code", "from IPython.display import JSON, display\n"
                              "display(JSON({'x': 3.6040260791778564, 'y': 0.30000000000000004}))")])
    raw = path.read_text()
    # Python's json writes NaN/Infinity for non-finite floats; a tool's metadata may hold them.
    raw = raw.replace('"metadata": {\n  "kernelspec"',
                      '"metadata": {\n  "acc": 3.6040260791778564,\n  "bad": NaN,\n  "top": -Infinity,\n  "kernelspec"', 1)
    path.write_text(raw)

    async def body(c):
        sc = await c.ok("run_all_cells", notebook="floats.ipynb", timeout_s=60)
        assert [e["status"] for e in sc["executions"]] == ["completed"], sc

    mcp.run(body)
    text = wait_file(path, lambda nb: nb.cells[0].get("execution_count")).cells and path.read_text()
    assert '"acc": 3.6040260791778564' in text
    assert '"bad": NaN' in text and '"top": -Infinity' in text
    assert '"x": 3.6040260791778564' in text, "a fresh display(JSON(...)) output keeps its exact float"
    assert '"y": 0.30000000000000004' in text


@pytest.mark.timeout(120)
def test_interleaved_streams_keep_arrival_order(mcp):
    path = mcp.root / "streams.ipynb"
    write_nb(path, [("code", "import sys\nprint('Bar!', file=sys.stderr, flush=True)\n"
                              "print('Combo breaker!', flush=True)\nprint('Foo!', file=sys.stderr, flush=True)")])

    async def body(c):
        sc = await c.ok("run_all_cells", notebook="streams.ipynb", timeout_s=60)
        assert sc["executions"][0]["status"] == "completed", sc

    mcp.run(body)
    nb = wait_file(path, lambda nb: nb.cells[0].get("execution_count"))
    got = [(o["name"], o["text"]) for o in nb.cells[0].outputs]
    assert got == [("stderr", "Bar!\n"), ("stdout", "Combo breaker!\n"), ("stderr", "Foo!\n")], got


def _widget_models(nb) -> list[tuple]:
    """metadata.widgets without the model ids (random per run): references to other models
    are counted, not compared."""
    state = nb.metadata["widgets"][WIDGET_MIME]
    assert (state["version_major"], state["version_minor"]) == (2, 0)
    models = state["state"]
    return sorted((m["model_name"], m["model_module"], m["model_module_version"],
                   sorted((k, repr(v) if "IPY_MODEL_" not in repr(v) else f"{repr(v).count('IPY_MODEL_')} refs")
                          for k, v in m["state"].items()),
                   m.get("buffers") is not None)
                  for m in models.values())


@pytest.mark.timeout(180)
def test_widget_state_saved_like_nbclient(mcp, shared_dirs):
    cells = [
        ("code", "import ipywidgets as w\ns = w.IntSlider(value=3, description='n')\ns"),
        ("code", "s.value = 42\nt = w.Text(value='hello')\nbox = w.VBox([s, t])\nbox"),
        ("code", "import numpy as np\nimport ipywidgets as w\n"
                 "img = w.Image(value=bytes(range(16)), format='png')\nimg"),
    ]
    ours = mcp.root / "widgets.ipynb"
    write_nb(ours, cells, widgets={WIDGET_MIME: {"state": {"stale": {}}, "version_major": 2, "version_minor": 0}})
    reference = mcp.base / "nbclient" / "widgets.ipynb"
    reference.parent.mkdir()
    shutil.copyfile(ours, reference)

    async def body(c):
        sc = await c.ok("run_all_cells", notebook="widgets.ipynb", timeout_s=90)
        assert [e["status"] for e in sc["executions"]] == ["completed"] * 3, sc

    mcp.run(body)
    mine = wait_file(ours, lambda nb: nb.cells[-1].get("execution_count"))
    expected = nbclient_execute(reference, shared_dirs, kernel_name="python3")
    got = _widget_models(mine)
    assert "stale" not in mine.metadata["widgets"][WIDGET_MIME]["state"]
    assert got == _widget_models(expected), f"ours {got}\nnbclient {_widget_models(expected)}"
    names = {m[0] for m in got}
    assert {"IntSliderModel", "TextModel", "VBoxModel", "ImageModel"} <= names, names
    slider = next(m for m in got if m[0] == "IntSliderModel")
    assert ("value", "42") in slider[3], "the live value (after a comm update) is saved"
    assert any(m[0] == "ImageModel" and m[4] for m in got), "binary buffers are saved base64"


@pytest.mark.timeout(120)
def test_nothing_to_run_still_gets_kernel_metadata(mcp, binary, shared_dirs, tmp_path):
    import subprocess

    from conftest import full_env

    async def body(c):
        for name in ("md.ipynb", "empty.ipynb"):
            path = mcp.root / name
            write_nb(path, [("markdown", "# only prose")] if name == "md.ipynb" else [("code", "  \n")])
            nb = read_nb(path)
            del nb.metadata["kernelspec"]
            nbformat.write(nb, str(path))
            sc = await c.ok("run_all_cells", notebook=name, timeout_s=60)
            assert sc["executions"] == [], sc
            meta = read_nb(path).metadata
            assert meta["kernelspec"]["name"] == "python3", meta
            assert meta["language_info"]["name"] == "python" and meta["language_info"]["version"], meta

    mcp.run(body)

    # The same with `jupyter-mcp run`.
    nb_dir, data = tmp_path / "run", tmp_path / "rundata"
    path = nb_dir / "md.ipynb"
    write_nb(path, [("markdown", "# only prose")])
    proc = subprocess.run([str(binary), "run", path.name, "--data-dir", str(data)], cwd=nb_dir,
                          env=full_env(data, *shared_dirs), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    assert read_nb(path).metadata["language_info"]["name"] == "python"


BASH_SPEC = {"name": "bash", "display_name": "Bash", "language": "bash"}


@pytest.mark.timeout(180)
def test_bash_kernel_through_the_same_tools(mcp):
    """Nothing may assume IPython where the Jupyter protocol suffices."""
    path = mcp.root / "sh.ipynb"
    write_nb(path, [("code", "echo hello from bash"), ("code", "echo out; echo err >&2; echo more"),
                    ("markdown", "prose")], kernelspec=BASH_SPEC)

    async def body(c):
        r = await c.ok("execute_code", notebook="sh.ipynb", code="echo $((6 * 7))", timeout_s=60)
        assert r["status"] == "completed", r
        assert "42" in str(r["outputs"]), r
        cell_id = read_nb(path).cells[0].id
        r = await c.ok("execute_cell", notebook="sh.ipynb", cell_id=cell_id, timeout_s=60)
        assert r["status"] == "completed", r
        sc = await c.ok("run_all_cells", notebook="sh.ipynb", timeout_s=60)
        assert [e["status"] for e in sc["executions"]] == ["completed", "completed"], sc
        # A failing command: bash_kernel answers execute_reply status "error".
        r = await c.ok("execute_code", notebook="sh.ipynb", code="false", timeout_s=60)
        assert r["status"] in ("failed", "completed"), r
        # Interrupt a long sleep.
        r = await c.ok("execute_code", notebook="sh.ipynb", code="sleep 600", timeout_s=1)
        assert r["status"] == "running", r
        await c.ok("interrupt_kernel", notebook="sh.ipynb")
        done = await c.wait_done(r["execution_id"], 60)
        assert done["status"] in ("interrupted", "failed"), done
        r = await c.ok("execute_code", notebook="sh.ipynb", code="echo alive", timeout_s=60)
        assert r["status"] == "completed" and "alive" in str(r["outputs"]), r
        # IPython-only features say so instead of failing obscurely.
        msg = await c.err("list_variables", notebook="sh.ipynb")
        assert "ipython kernel" in msg.lower(), msg
        msg = await c.err("save_environment", notebook="sh.ipynb", name="x", timeout_s=30)
        assert "ipython kernel" in msg.lower(), msg

    mcp.run(body)
    nb = wait_file(path, lambda nb: nb.cells[1].get("execution_count"))
    assert nb.metadata["language_info"]["name"] == "bash", nb.metadata
    assert "hello from bash" in "".join(o.get("text", "") for o in nb.cells[0].outputs)
    texts = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    assert re.search(r"out\n.*more\n", texts, re.S), nb.cells[1].outputs
