"""The notebook file holds what nbclient would write (SPEC §4, issue 4): the same notebook is
run through the server (run_all_cells) and through nbclient itself in the test venv (its
defaults: one output per stream message), on real kernels; cell outputs and execution counts
must be equal after normalising what legitimately differs (kernel temp file names in
tracebacks) and merging consecutive same-name streams as JupyterLab saves them (SPEC section 4:
interleaved stdout/stderr keep their arrival order; nbclient's coalesce_streams=True would
reorder them)."""

from __future__ import annotations

import re
import shutil
import time

import nbformat
import pytest

from helpers import nbclient_execute, validate_file, write_nb

CELLS = [
    # A tqdm-style progress loop: clear_output(wait=True) leaves only the final state.
    "import time\nfrom IPython.display import clear_output\nfor i in range(30):\n"
    "    clear_output(wait=True)\n    print(f'step {i + 1}/30', flush=True)\n    time.sleep(0.005)",
    # Carriage returns in one stream.
    "for i in range(50):\n    print(f'\\r{i * 2}%', end='', flush=True)\nprint('\\rdone')",
    # update_display_data by display id, in the same cell and from a later one.
    "from IPython.display import HTML, display, update_display\n"
    "h = display('first', display_id=True)\nh.update('second')\n"
    "display(HTML('<b>v1</b>'), display_id='shared')\nprint('after', flush=True)",
    "update_display(HTML('<b>v2</b>'), display_id='shared')\nprint('updated', flush=True)",
    # Interleaved stdout and stderr: arrival order kept, consecutive ones merged.
    "import sys\nfor i in range(3):\n    print(f'out {i}', flush=True)\n"
    "    print(f'err {i}', file=sys.stderr, flush=True)\nprint('tail', flush=True)",
    # execute_result
    "21 * 2",
    # clear_output() without wait, and a raw mime bundle.
    "from IPython.display import clear_output, display\nprint('gone', flush=True)\nclear_output()\n"
    "print('stay', flush=True)\ndisplay({'text/plain': 'raw', 'text/html': '<p>raw</p>'}, raw=True)",
    # An error (the run goes on: raises-exception / allow_errors).
    "print('before', flush=True)\nraise ValueError('boom')",
    "print('after the error')",
]


_RGX_CARRIAGERETURN = re.compile(r".*\r(?=[^\n])")  # nbclient's
_RGX_BACKSPACE = re.compile(r"[^\n]\x08")  # JupyterLab's fixBackspace


def jupyterlab_streams(outputs: list) -> list:
    """Consecutive same-name streams merged; backspaces, then carriage returns applied."""
    merged: list = []
    for o in outputs:
        if (o["output_type"] == "stream" and merged and merged[-1]["output_type"] == "stream"
                and merged[-1]["name"] == o["name"]):
            merged[-1] = dict(merged[-1], text=merged[-1]["text"] + o["text"])
        else:
            merged.append(dict(o))
    for o in merged:
        if o["output_type"] == "stream":
            text = o["text"]
            while (shorter := _RGX_BACKSPACE.sub("", text)) != text:
                text = shorter
            o["text"] = _RGX_CARRIAGERETURN.sub("", text)
    return merged


def normalise(nb, reference: bool = False) -> list:
    out = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = cell.get("outputs", [])
        outputs = nbformat.from_dict(jupyterlab_streams(outputs) if reference else outputs)
        text = nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=outputs)]))
        text = re.sub(r"ipykernel_\d+/\d+\.py", "ipykernel_N/N.py", text)
        cell_json = nbformat.reads(text, as_version=4).cells[0]
        out.append({"id": cell.get("id"), "execution_count": cell.get("execution_count"),
                    "outputs": cell_json.outputs})
    return out


@pytest.mark.timeout(180)
def test_notebook_outputs_match_nbclient(mcp, shared_dirs):
    cells = [{"cell_type": "code", "source": src,
              "tags": ["raises-exception"] if "raise ValueError" in src else []} for src in CELLS]
    ours = mcp.root / "parity.ipynb"
    write_nb(ours, cells)
    reference = mcp.base / "nbclient" / "parity.ipynb"
    reference.parent.mkdir()
    shutil.copyfile(ours, reference)

    async def body(c):
        sc = await c.ok("run_all_cells", notebook="parity.ipynb", stop_on_error=False, timeout_s=90)
        for e in sc["executions"]:
            if e["status"] in ("pending", "running"):
                e.update(await c.wait_done(e["execution_id"], timeout=60))
        statuses = [e["status"] for e in sc["executions"]]
        assert statuses == ["completed"] * 7 + ["failed", "completed"], statuses

    mcp.run(body)
    # The write-back may trail the report by at most a batch delay.
    deadline = time.monotonic() + 5
    while True:
        mine = validate_file(ours)
        if all(c.get("execution_count") for c in mine.cells) or time.monotonic() > deadline:
            break
        time.sleep(0.1)

    # nbclient itself, with the same kernelspec and a kernel environment like the server's.
    nbformat.write(nbclient_execute(reference, shared_dirs, kernel_name="python3"), str(reference))

    expected = normalise(nbformat.read(str(reference), as_version=4), reference=True)
    got = normalise(mine)
    assert len(got) == len(expected) == len(CELLS)
    for g, e, src in zip(got, expected, CELLS):
        assert g == e, f"cell {src.splitlines()[0]!r}:\nours    {g}\nnbclient {e}"
    # Spot checks of the semantics themselves.
    assert got[0]["outputs"] == [{"output_type": "stream", "name": "stdout", "text": "step 30/30\n"}]
    assert got[2]["outputs"][0]["data"]["text/plain"] == "'second'"
    assert got[2]["outputs"][1]["data"]["text/html"] == "<b>v2</b>"
    assert [(o["name"], o["text"]) for o in got[4]["outputs"]] == [
        ("stdout", "out 0\n"), ("stderr", "err 0\n"), ("stdout", "out 1\n"), ("stderr", "err 1\n"),
        ("stdout", "out 2\n"), ("stderr", "err 2\n"), ("stdout", "tail\n")]
