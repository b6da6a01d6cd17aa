"""Notebook editing and basic execution through MCP, checked against the file on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import (
    cell_by_id,
    wait_gone,
    images_of,
    plain_text,
    read_nb,
    rendered_text,
    stream_text,
    text_of,
    validate_file,
)

# Tool names users' configurations and outside clients rely on (SPEC.md section 3, "fixed").
FIXED_TOOLS = {
    "create_notebook", "read_notebook", "insert_cell", "edit_cell", "delete_cell",
    "execute_cell", "execute_code", "run_all_cells", "get_execution", "cancel_execution",
    "list_kernelspecs", "start_kernel", "list_kernels", "interrupt_kernel", "restart_kernel",
    "shutdown_kernel", "list_variables",
    # save_environment, load_environment, list_checkpoints, delete_checkpoint (checkpoints)
    # and read_asset (assets) arrive with their own issues.
}


@pytest.mark.timeout(60)
def test_fixed_tool_names_have_output_schemas(mcp):
    async def body(c):
        tools = (await c.session.list_tools()).tools
        by_name = {t.name: t for t in tools}
        missing = FIXED_TOOLS - by_name.keys()
        assert not missing, f"fixed tool names missing: {sorted(missing)}"
        no_schema = sorted(n for n in FIXED_TOOLS if by_name[n].output_schema is None)
        assert not no_schema, f"tools without outputSchema: {no_schema}"
        for name in FIXED_TOOLS:
            assert (by_name[name].description or "").strip(), f"{name} has no description"

    mcp.run(body)


@pytest.mark.timeout(120)
def test_create_insert_execute_read(mcp):
    path = mcp.root / "analysis.ipynb"

    async def body(c):
        sc = await c.ok("create_notebook", notebook="analysis.ipynb",
                        cells=[{"cell_type": "markdown", "source": "# Title"},
                               {"cell_type": "code", "source": "x = 21"}])
        assert Path(sc["notebook"]).name == "analysis.ipynb"
        md_id, x_id = sc["cell_ids"]
        assert path.is_file()
        nb = read_nb(path)
        assert [c_.id for c_ in nb.cells] == [md_id, x_id]
        assert nb.metadata["kernelspec"]["name"] == "python3"

        ins = await c.ok("insert_cell", notebook="analysis.ipynb", source="y = x * 2\ny")
        y_id = ins["cell_id"]
        assert ins["index"] == 2
        ins = await c.ok("insert_cell", notebook="analysis.ipynb", source="print('hello')",
                         after_cell_id=x_id)
        p_id = ins["cell_id"]
        assert ins["index"] == 2
        ins = await c.ok("insert_cell", notebook="analysis.ipynb", source="Some *notes*",
                         cell_type="markdown", index=0)
        n_id = ins["cell_id"]
        assert ins["index"] == 0
        assert len({md_id, x_id, y_id, p_id, n_id}) == 5
        assert [c_.id for c_ in read_nb(path).cells] == [n_id, md_id, x_id, p_id, y_id]

        r1 = await c.ok("execute_cell", notebook="analysis.ipynb", cell_id=x_id)
        assert r1["status"] == "completed", r1
        assert r1["cell_id"] == x_id
        assert r1["execution_count"] == 1
        assert r1["execution_id"]
        assert r1["outputs"] == []

        r2 = await c.ok("execute_cell", notebook="analysis.ipynb", index=4)  # the y cell
        assert r2["status"] == "completed", r2
        assert r2["cell_id"] == y_id
        assert r2["execution_count"] == 2
        results = [o for o in r2["outputs"] if o["output_type"] == "execute_result"]
        assert len(results) == 1 and results[0]["text"].strip() == "42", r2["outputs"]
        assert "text/plain" in (results[0].get("mime_types") or ["text/plain"])

        r3 = await c.ok("execute_cell", notebook="analysis.ipynb", cell_id=p_id)
        assert r3["status"] == "completed"
        assert stream_text(r3["outputs"]) == "hello\n"
        assert r3["execution_count"] == 3
        for r in (r1, r2, r3):
            for key in ("started_at", "finished_at", "duration_ms"):
                assert r.get(key) is not None, f"{key} missing from {r}"
            assert r["notebook"] == sc["notebook"]

        full = await c.ok("read_notebook", notebook="analysis.ipynb", outputs="full")
        assert full["total_cells"] == 5
        cells = full["cells"]
        assert [x["id"] for x in cells] == [n_id, md_id, x_id, p_id, y_id]
        assert [x["index"] for x in cells] == [0, 1, 2, 3, 4]
        assert [x["cell_type"] for x in cells] == ["markdown", "markdown", "code", "code", "code"]
        assert cells[4]["source"] == "y = x * 2\ny"
        assert [x.get("execution_count") for x in cells[2:]] == [1, 3, 2]
        assert stream_text(cells[3]["outputs"]) == "hello\n"
        assert "42" in rendered_text(cells[4])
        assert full.get("kernelspec", {}).get("name", "python3") == "python3"

        none = await c.ok("read_notebook", notebook="analysis.ipynb", outputs="none")
        assert all(not x.get("outputs") for x in none["cells"]), none
        assert [x["id"] for x in none["cells"]] == [n_id, md_id, x_id, p_id, y_id]

        page = await c.ok("read_notebook", notebook="analysis.ipynb", start=1, end=3)
        idx = [x["index"] for x in page["cells"]]
        assert idx[0] == 1 and idx == list(range(1, 1 + len(idx))) and len(idx) in (2, 3), idx
        assert page["total_cells"] == 5

        # The text rendering for the model carries the result too.
        _, res = await c.call("execute_cell", notebook="analysis.ipynb", cell_id=y_id)
        assert not res.is_error and "42" in text_of(res)

    mcp.run(body)

    nb = validate_file(path)
    y = next(c_ for c_ in nb.cells if c_.source == "y = x * 2\ny")
    assert y.execution_count == 4
    results = [o for o in y.outputs if o.output_type == "execute_result"]
    assert len(results) == 1 and plain_text(results[0]) == "42"
    assert results[0].execution_count == 4
    p = next(c_ for c_ in nb.cells if c_.source == "print('hello')")
    assert p.execution_count == 3
    assert stream_text(p.outputs) == "hello\n"
    x = next(c_ for c_ in nb.cells if c_.source == "x = 21")
    assert x.execution_count == 1 and x.outputs == []
    # JupyterLab-style metadata once a kernel ran.
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.metadata.get("language_info", {}).get("name") == "python"


@pytest.mark.timeout(120)
def test_edit_delete_move_clear(mcp):
    path = mcp.root / "sub" / "edit.ipynb"
    nbname = "sub/edit.ipynb"

    async def body(c):
        sc = await c.ok("create_notebook", notebook=nbname,
                        cells=[{"cell_type": "code", "source": "a = 1"},
                               {"cell_type": "code", "source": "print('b')"},
                               {"cell_type": "markdown", "source": "doc"}])
        a_id, b_id, m_id = sc["cell_ids"]
        assert path.is_file()

        await c.ok("execute_cell", notebook=nbname, cell_id=a_id)
        r = await c.ok("execute_cell", notebook=nbname, cell_id=b_id)
        assert stream_text(r["outputs"]) == "b\n"

        e = await c.ok("edit_cell", notebook=nbname, cell_id=a_id, source="a = 2\nprint(a * 10)")
        assert e["ok"] is True and e["cell_id"] == a_id
        assert cell_by_id(read_nb(path), a_id).source == "a = 2\nprint(a * 10)"
        r = await c.ok("execute_cell", notebook=nbname, cell_id=a_id)
        assert stream_text(r["outputs"]) == "20\n"

        mv = await c.ok("move_cell", notebook=nbname, cell_id=m_id, index=0)
        assert mv["ok"] is True and mv["index"] == 0
        assert [x.id for x in read_nb(path).cells] == [m_id, a_id, b_id]

        d = await c.ok("delete_cell", notebook=nbname, cell_id=b_id)
        assert d["ok"] is True and d["cell_id"] == b_id
        nb = read_nb(path)
        assert [x.id for x in nb.cells] == [m_id, a_id]
        msg = await c.err("execute_cell", notebook=nbname, cell_id=b_id)
        assert "read_notebook" in msg

        one = await c.ok("clear_outputs", notebook=nbname, cell_id=a_id)
        assert one["ok"] is True and one["cleared"] == 1
        a = cell_by_id(read_nb(path), a_id)
        assert a.outputs == [] and a.execution_count is None

        await c.ok("execute_cell", notebook=nbname, cell_id=a_id)
        allc = await c.ok("clear_outputs", notebook=nbname)
        assert allc["cleared"] >= 1
        assert all(not x.get("outputs") for x in read_nb(path).cells if x.cell_type == "code")

        listed = await c.ok("list_notebooks")
        names = [n["notebook"] for n in listed["notebooks"]]
        assert any(n.endswith("edit.ipynb") for n in names), names
        sub = await c.ok("list_notebooks", dir="sub")
        assert any(n["notebook"].endswith("edit.ipynb") for n in sub["notebooks"])

    mcp.run(body)
    validate_file(path)


@pytest.mark.timeout(120)
def test_stream_result_error_and_execute_code(mcp):
    path = mcp.root / "streams.ipynb"

    async def body(c):
        sc = await c.ok("create_notebook", notebook="streams.ipynb", cells=[
            {"cell_type": "code", "source": "import sys\nprint('to out')\nprint('to err', file=sys.stderr)"},
            {"cell_type": "code", "source": "6 * 7"},
            {"cell_type": "code", "source": "print('before')\n1 / 0"},
            {"cell_type": "code", "source": "'after'"},
        ])
        s_id, r_id, e_id, a_id = sc["cell_ids"]

        s = await c.ok("execute_cell", notebook="streams.ipynb", cell_id=s_id)
        assert s["status"] == "completed"
        assert stream_text(s["outputs"], "stdout") == "to out\n"
        assert stream_text(s["outputs"], "stderr") == "to err\n"

        r = await c.ok("execute_cell", notebook="streams.ipynb", cell_id=r_id)
        res = [o for o in r["outputs"] if o["output_type"] == "execute_result"]
        assert len(res) == 1 and res[0]["text"].strip() == "42"
        assert res[0].get("execution_count") in (None, r["execution_count"])

        _, raw = await c.call("execute_cell", notebook="streams.ipynb", cell_id=e_id)
        assert raw.is_error is False, "a cell that raises is not a tool error"
        e = raw.structured_content
        assert e["status"] == "failed"
        assert e["error"]["ename"] == "ZeroDivisionError"
        assert "division by zero" in e["error"]["evalue"]
        assert isinstance(e["error"]["traceback"], list) and e["error"]["traceback"]
        assert not any("\x1b[" in line for line in e["error"]["traceback"]), "ANSI not stripped"
        assert stream_text(e["outputs"]) == "before\n"
        errs = [o for o in e["outputs"] if o["output_type"] == "error"]
        assert len(errs) == 1 and "ZeroDivisionError" in (errs[0].get("text") or "")
        assert "ZeroDivisionError" in text_of(raw)
        assert e["execution_count"] == 3

        a = await c.ok("execute_cell", notebook="streams.ipynb", cell_id=a_id)
        assert a["status"] == "completed" and "'after'" in rendered_text(a)

        before = path.read_bytes()
        x = await c.ok("execute_code", notebook="streams.ipynb", code="z = 5\nprint('side')\nz + 1")
        assert x["status"] == "completed"
        assert "cell_id" not in x or x["cell_id"] is None
        assert stream_text(x["outputs"]) == "side\n"
        assert any(o["output_type"] == "execute_result" and o["text"].strip() == "6" for o in x["outputs"])
        assert len(read_nb(path).cells) == 4
        assert path.read_bytes() == before, "execute_code must not touch the notebook file"
        got = await c.ok("get_execution", execution_id=x["execution_id"])
        assert got["status"] == "completed" and got["execution_id"] == x["execution_id"]

        bad = await c.ok("execute_code", notebook="streams.ipynb", code="undefined_name")
        assert bad["status"] == "failed" and bad["error"]["ename"] == "NameError"

    mcp.run(body)

    nb = validate_file(path)
    s, r, e, a = nb.cells
    assert stream_text(s.outputs, "stdout") == "to out\n"
    assert stream_text(s.outputs, "stderr") == "to err\n"
    assert plain_text([o for o in r.outputs if o.output_type == "execute_result"][0]) == "42"
    errs = [o for o in e.outputs if o.output_type == "error"]
    assert len(errs) == 1 and errs[0].ename == "ZeroDivisionError" and errs[0].traceback
    assert stream_text(e.outputs) == "before\n"
    assert [x.execution_count for x in nb.cells] == [1, 2, 3, 4]


@pytest.mark.timeout(180)
def test_image_and_bounded_output(mcp):
    path = mcp.root / "rich.ipynb"
    plot = ("import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
            "import matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(2, 1))\n"
            "ax.plot([0, 1, 2], [2, 0, 1])\nplt.show()")
    big = "for i in range(5000):\n    print('line %05d ' % i + 'x' * 40)"

    async def body(c):
        sc = await c.ok("create_notebook", notebook="rich.ipynb",
                        cells=[{"cell_type": "code", "source": plot},
                               {"cell_type": "code", "source": big}])
        p_id, b_id = sc["cell_ids"]
        _, res = await c.call("execute_cell", notebook="rich.ipynb", cell_id=p_id, timeout_s=90)
        assert not res.is_error, text_of(res)
        p = res.structured_content
        assert p["status"] == "completed", p
        disp = [o for o in p["outputs"] if "image/png" in (o.get("mime_types") or [])]
        assert len(disp) == 1, p["outputs"]
        assert disp[0]["output_type"] == "display_data"
        imgs = images_of(res)
        assert len(imgs) == 1 and imgs[0].mime_type == "image/png" and len(imgs[0].data) > 100

        b = await c.ok("execute_cell", notebook="rich.ipynb", cell_id=b_id)
        assert b["status"] == "completed"
        total = 5000 * len("line 00000 " + "x" * 40 + "\n")
        shown = sum(len((o.get("text") or "").encode()) for o in b["outputs"])
        assert shown <= 8 * 1024 + 1024, f"{shown} bytes of text returned (bound is 8 KiB per cell)"
        cut = [o for o in b["outputs"] if o.get("truncated")]
        assert cut, b["outputs"]
        assert cut[0]["truncated"]["total_bytes"] >= total
        assert cut[0]["truncated"]["shown_bytes"] <= 8 * 1024 + 1024
        assert "line 00000" in rendered_text(b) and "line 04999" in rendered_text(b), "head and tail"

    mcp.run(body)

    nb = validate_file(path)
    p, b = nb.cells
    pngs = [o for o in p.outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 1
    full = stream_text(b.outputs)
    assert full == "".join("line %05d " % i + "x" * 40 + "\n" for i in range(5000)), \
        "the file keeps the complete output"


@pytest.mark.timeout(120)
def test_kernels_and_variables(mcp):
    async def body(c):
        specs = await c.ok("list_kernelspecs")
        by_name = {k["name"]: k for k in specs["kernelspecs"]}
        assert "python3" in by_name, specs
        py = by_name["python3"]
        assert py["language"] == "python" and py["display_name"]
        assert Path(py["path"]).exists(), py

        await c.ok("create_notebook", notebook="vars.ipynb")
        st = await c.ok("start_kernel", notebook="vars.ipynb")
        assert st["kernel_name"] == "python3"
        assert st["state"] in ("starting", "idle")
        assert isinstance(st.get("pid"), int)

        r = await c.ok("execute_code", notebook="vars.ipynb",
                       code="import numpy as np, pandas as pd\n"
                            "arr = np.zeros((3, 4))\ndf = pd.DataFrame({'a': [1, 2]})\n"
                            "names = ['x', 'y', 'z']\ncount = 7")
        assert r["status"] == "completed", r
        # Right after an execution completed (reply and IOPub idle), the kernel is idle.
        ks = await c.ok("list_kernels")
        mine = [k for k in ks["kernels"] if k["notebook"].endswith("vars.ipynb")]
        assert len(mine) == 1
        k = mine[0]
        assert k["kernel_name"] == "python3" and k["pid"] == st["pid"]
        assert k["state"] == "idle" and k["queue_depth"] == 0 and k["started_at"]

        v = await c.ok("list_variables", notebook="vars.ipynb")
        by = {x["name"]: x for x in v["variables"]}
        for name in ("arr", "df", "names", "count"):
            assert name in by, f"{name} missing from {sorted(by)}"
        assert by["arr"]["type"] in ("ndarray", "numpy.ndarray")
        assert list(by["arr"]["shape"]) == [3, 4]
        assert list(by["df"]["shape"]) == [2, 1]
        assert by["names"]["len"] == 3
        assert by["count"]["type"] == "int"
        assert "np" not in by and "pd" not in by, "modules are not user variables"

        down = await c.ok("shutdown_kernel", notebook="vars.ipynb")
        assert down["state"] not in ("idle", "busy", "starting"), down
        assert await wait_gone(st["pid"], 10), "shutdown_kernel left the kernel process running"
        ks = await c.ok("list_kernels")
        assert all(k["state"] == "dead" for k in ks["kernels"] if k["notebook"].endswith("vars.ipynb"))

    mcp.run(body)
