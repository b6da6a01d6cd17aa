"""Every notebook of ../shared/corpus (papermill's and nbconvert's test notebooks), executed
(a) headless with `jupyter-mcp run` and (b) over MCP with run_all_cells + get_execution.

The expectations below were decided by reading each notebook and executing it with
nbclient 0.11 / ipykernel 7.4 / IPython 9 (the pinned requirements.txt). "First error"
is the index in the notebook's `cells` list (markdown included) of the first cell whose
execute_reply is an error.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import CORPUS, Harness, copy_corpus_notebook, full_env
from helpers import (
    TERMINAL,
    images_of,
    is_empty_code,
    kill_pids,
    pids_mentioning,
    read_nb,
    stream_text,
    text_of,
    validate_file,
)

OK, ERROR, NO_KERNEL, TIMEOUT, STDIN = "ok", "error", "no-kernel", "timeout", "stdin"


@dataclass(frozen=True)
class Expect:
    outcome: str
    cell: int | None = None  # ERROR: index in nb.cells of the first cell that raises
    ename: str | None = None  # ERROR: its exception name
    error_output: bool = True  # ERROR: the failing cell gets an nbformat "error" output
    kernel: str | None = None  # NO_KERNEL: the kernelspec name the notebook asks for
    files: tuple[str, ...] = ()  # fixture files created next to the copy first
    timeout: int = 60  # per-cell seconds: `run --timeout`, MCP timeout_s
    image: str | None = None  # OK: an output of this image type, also as MCP ImageContent
    check_cwd: bool = False  # OK: the notebook prints "NB_CWD <cwd>", which must be its folder


EXPECT: dict[str, Expect] = {
    # ipywidgets IntSlider: a widget-view+json output plus comm_open traffic on IOPub.
    "nbconvert/Unexecuted_widget.ipynb": Expect(OK),
    # Same notebook, second copy (nbconvert tests the widget-state metadata on it).
    "nbconvert/Unexecuted_widget_2.ipynb": Expect(OK),
    # 40+ widget cells, nbformat 4.2 without ids; cell 68 reads testimage.png (provided).
    "nbconvert/Widget_List.ipynb": Expect(OK, files=("testimage.png",)),
    # Markdown cells with attachments only: nothing to execute.
    "nbconvert/attachment.ipynb": Expect(OK),
    # One markdown cell linking an image: nothing to execute.
    "nbconvert/latex-linked-image.ipynb": Expect(OK),
    # Asks for kernelspec "Python [Root]" (an old conda name), which is not installed.
    "nbconvert/markdown_display_priority.ipynb": Expect(NO_KERNEL, kernel="Python [Root]"),
    # No kernelspec in metadata (python3 by default); `from sympy import *` fails: sympy is not installed.
    "nbconvert/notebook1.ipynb": Expect(ERROR, cell=2, ename="ModuleNotFoundError"),
    # matplotlib inline works, but IPython 9 removed IPython.display.set_matplotlib_formats.
    "nbconvert/notebook2.ipynb": Expect(ERROR, cell=3, ename="ImportError"),
    # input() in a headless run: StdinNotImplementedError, or (if stdin is offered) it blocks
    # until the timeout; either way an error at cell 0.
    "nbconvert/notebook3.ipynb": Expect(STDIN, cell=0, timeout=10),
    # Raises RuntimeError on purpose in its second code cell.
    "nbconvert/notebook3_with_errors.ipynb": Expect(ERROR, cell=3, ename="RuntimeError"),
    # IPython.display.Image of a JPEG next to the notebook (provided): image/jpeg output.
    "nbconvert/notebook4_jpeg.ipynb": Expect(OK, files=("containerized_deployments.jpeg",), image="image/jpeg"),
    # Markdown-only (embedded images).
    "nbconvert/notebook5_embed_images.ipynb": Expect(OK),
    # Julia kernel, not installed: a clear error that names julia-0.4 and lists python3.
    "nbconvert/notebook_jl.ipynb": Expect(NO_KERNEL, kernel="julia-0.4"),
    # Tagged cells (ordinary tags, not skip-execution): two prints.
    "nbconvert/notebook_tags.ipynb": Expect(OK),
    # Asks for kernelspec "python3_mydev", which is not installed.
    "nbconvert/pngmetadata.ipynb": Expect(NO_KERNEL, kernel="python3_mydev"),
    # numpy; three trailing empty code cells that must not be executed (no execution_count).
    "nbconvert/prompt_numbers.ipynb": Expect(OK),
    # Raw cells only.
    "nbconvert/rawtest.ipynb": Expect(OK),
    # A _repr_mimebundle_ with text/x-rst and text/html.
    "nbconvert/rst_output.ipynb": Expect(OK),
    # matplotlib with figure_formats = ['svg']: an image/svg+xml output (an asset, not image content).
    "nbconvert/svg.ipynb": Expect(OK),
    # %%bash running `python -m papermill`, which is not installed: CalledProcessError.
    "papermill/binder.ipynb": Expect(ERROR, cell=1, ename="CalledProcessError"),
    # A single empty code cell, no kernelspec: nothing executes.
    "papermill/blank-vscode.ipynb": Expect(OK),
    # Python 2 print statement in the first cell: SyntaxError.
    "papermill/broken.ipynb": Expect(ERROR, cell=0, ename="SyntaxError"),
    # Markdown first, then a good print, then `assert False`.
    "papermill/broken1.ipynb": Expect(ERROR, cell=6, ename="AssertionError"),
    # IPython 9 has no IPython.core.display.display: ImportError in the second cell.
    "papermill/broken2.ipynb": Expect(ERROR, cell=1, ename="ImportError"),
    # A parameters cell ending in `= 2`: SyntaxError.
    "papermill/complex_parameters.ipynb": Expect(ERROR, cell=0, ename="SyntaxError"),
    # sleep(60): run with a 3 s cell timeout; MCP interrupts it instead.
    "papermill/keyboard_interrupt.ipynb": Expect(TIMEOUT, cell=0, timeout=3),
    # `%undefined-line-magic`: execute_reply status error (UsageError) but only a stderr
    # stream on disk, no error output (as nbclient records it).
    "papermill/line_magic_error.ipynb": Expect(ERROR, cell=0, ename="UsageError", error_output=False),
    # nbformat 4.4 without cell ids.
    "papermill/nb_version_4.4.ipynb": Expect(OK),
    # Plain prints and a trailing empty cell.
    "papermill/no_parameters.ipynb": Expect(OK),
    # Kernelspec "r" (R), not installed.
    "papermill/notimplemented_translator.ipynb": Expect(NO_KERNEL, kernel="r"),
    # Asserts check.txt is in the working directory (provided): the kernel runs in the notebook's folder.
    "papermill/read_check.ipynb": Expect(OK, files=("check.txt",), check_cwd=True),
    # Shadows the builtin sum; prints 2.
    "papermill/report_mode_test.ipynb": Expect(OK),
    # A parameters cell only.
    "papermill/result_no_exec.ipynb": Expect(OK),
    # The classic: print(msg) with msg = None.
    "papermill/simple_execute.ipynb": Expect(OK),
    # sys.exit() inside IPython is an error output (SystemExit), the kernel survives.
    "papermill/sysexit.ipynb": Expect(ERROR, cell=1, ename="SystemExit"),
    # sys.exit(0): still an error reply in IPython.
    "papermill/sysexit0.ipynb": Expect(ERROR, cell=1, ename="SystemExit"),
    # sys.exit(1).
    "papermill/sysexit1.ipynb": Expect(ERROR, cell=1, ename="SystemExit"),
    # raise SystemExit.
    "papermill/systemexit.ipynb": Expect(ERROR, cell=1, ename="SystemExit"),
    # Kernelspec named "python": jupyter_client maps it to python3 (nbclient runs it); 2.5 s of prints.
    "papermill/test_autosave.ipynb": Expect(OK),
    # logging to stderr, then `from ggplot import mpg`: ModuleNotFoundError.
    "papermill/test_logging.ipynb": Expect(ERROR, cell=2, ename="ModuleNotFoundError"),
    # One print, no language_info.
    "papermill/test_notebooknode_io.ipynb": Expect(OK),
}


def corpus_files() -> list[str]:
    if not CORPUS.is_dir():
        return []
    return sorted(str(p.relative_to(CORPUS)) for p in CORPUS.glob("*/*.ipynb"))


# Parametrize over the expectation table (stable ids even if the corpus is missing);
# test_table_covers_the_corpus fails when the corpus and the table disagree.
CASES = sorted(EXPECT)


def test_table_covers_the_corpus(corpus):
    files = corpus_files()
    assert files, f"no notebooks under {corpus}"
    assert sorted(EXPECT) == files, (
        f"not in EXPECT: {sorted(set(files) - set(EXPECT))}; "
        f"in EXPECT but gone: {sorted(set(EXPECT) - set(files))}")


def make_fixture_file(path: Path) -> None:
    if path.suffix in (".png", ".jpeg", ".jpg"):
        from PIL import Image  # pillow comes with matplotlib

        img = Image.new("RGB", (24, 16), (40, 90, 200))
        img.save(path, "JPEG" if path.suffix != ".png" else "PNG")
    else:
        path.write_text("present\n")


def prepare(corpus: Path, rel: str, dest: Path) -> tuple[Path, Expect]:
    exp = EXPECT[rel]
    nb_path = copy_corpus_notebook(corpus, rel, dest)
    for name in exp.files:
        make_fixture_file(dest / name)
    return nb_path, exp


def code_cells(nb) -> list[tuple[int, object]]:
    return [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]


def executed_counts(nb) -> list[int | None]:
    return [c.get("execution_count") for _, c in code_cells(nb) if not is_empty_code(c)]


def names_cell(stderr: str, nb, index: int) -> bool:
    """Does stderr identify the cell at `index`: by id, by index (0- or 1-based, over all
    cells or over code cells), or by its execution count ("In [n]")?"""
    cell = nb.cells[index]
    if cell.get("id") and cell["id"] in stderr:
        return True
    numbers = {index, index + 1}
    if cell.cell_type == "code":
        code_pos = [i for i, _ in code_cells(nb)].index(index)
        numbers |= {code_pos, code_pos + 1}
    for m in re.finditer(r"cell\s*(?:#|no\.?|number|index)?\s*\[?(\d+)", stderr, re.IGNORECASE):
        if int(m.group(1)) in numbers:
            return True
    count = cell.get("execution_count")
    return count is not None and re.search(rf"In ?\[{count}\]", stderr) is not None


def assert_ok_notebook(nb, original, exp: Expect, nb_dir: Path) -> None:
    counts = executed_counts(nb)
    assert counts == list(range(1, len(counts) + 1)), f"execution counts {counts}"
    for i, c in code_cells(nb):
        if is_empty_code(c):
            # Not executed (nbclient skips them): no new execution_count; an old one may stay.
            assert c.get("execution_count") in (None, original.cells[i].get("execution_count")), \
                f"empty cell {i} was executed"
            assert not c.get("outputs")
        errors = [o for o in c.get("outputs", []) if o.output_type == "error"]
        assert not errors, f"unexpected error output {errors[0].get('ename')}: {errors[0].get('evalue')}"
    if exp.image:
        assert any(exp.image in o.get("data", {}) for _, c in code_cells(nb) for o in c.get("outputs", [])), \
            f"no {exp.image} output"
    if exp.check_cwd:
        out = "".join(stream_text(c.get("outputs", [])) for _, c in code_cells(nb))
        m = re.search(r"NB_CWD (.+)", out)
        assert m, out
        assert os.path.realpath(m.group(1).strip()) == os.path.realpath(nb_dir), \
            "the kernel must run in the notebook's folder"


def assert_error_notebook(nb, exp: Expect) -> None:
    ran = [c.get("execution_count") for i, c in code_cells(nb) if i <= exp.cell and not is_empty_code(c)]
    assert ran == list(range(1, len(ran) + 1)), f"cells up to the failing one ran in order: counts {ran}"
    failing = nb.cells[exp.cell]
    if exp.error_output:
        errs = [o for o in failing.outputs if o.output_type == "error"]
        assert errs and errs[0].ename == exp.ename, f"outputs of the failing cell: {failing.outputs}"


# --------------------------------------------------------------------------------------
# (a) jupyter-mcp run


@pytest.mark.corpus
@pytest.mark.timeout(240)
@pytest.mark.parametrize("rel", CASES)
def test_corpus_run_command(rel, corpus, binary, tmp_path, shared_dirs):
    nb_dir = tmp_path / "nb"
    data = tmp_path / "data"
    nb_path, exp = prepare(corpus, rel, nb_dir)
    before = nb_path.read_bytes()
    original = read_nb(nb_path)
    n_code = max(1, len(code_cells(original)))
    wall = exp.timeout * n_code + 60

    cmd = [str(binary), "run", nb_path.name, "--timeout", str(exp.timeout), "--data-dir", str(data)]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=nb_dir, env=full_env(data, *shared_dirs), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=wall)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"`jupyter-mcp run` still running after {wall}s\nstderr:\n{stderr[-3000:]}")
    finally:
        leftovers = pids_mentioning(data)
        if leftovers:
            kill_pids(leftovers)
    elapsed = time.monotonic() - t0
    rc = proc.returncode
    print(f"$ {' '.join(cmd)}  (cwd {nb_dir})\nrc={rc} in {elapsed:.1f}s\n--- stdout\n{stdout[-2000:]}"
          f"\n--- stderr\n{stderr[-4000:]}")
    assert not leftovers, f"`run` left processes behind: {sorted(leftovers)}"

    if exp.outcome == NO_KERNEL:
        assert rc != 0
        assert exp.kernel in stderr, f"stderr must name the missing kernelspec {exp.kernel!r}"
        assert "python3" in stderr, "stderr must list the installed kernelspecs"
        assert nb_path.read_bytes() == before, "a notebook that could not run is left untouched"
        return

    nb = validate_file(nb_path)
    if exp.outcome == OK:
        assert rc == 0, f"exit code {rc}"
        assert_ok_notebook(nb, original, exp, nb_dir)
    elif exp.outcome == ERROR:
        assert rc != 0, "a cell error must give a non-zero exit code"
        assert names_cell(stderr, nb, exp.cell), f"stderr does not name cell {exp.cell}"
        assert exp.ename in stderr, f"stderr does not mention {exp.ename}"
        assert_error_notebook(nb, exp)
    elif exp.outcome == TIMEOUT:
        assert rc != 0
        assert elapsed < exp.timeout + 30, f"the {exp.timeout}s cell timeout took {elapsed:.0f}s"
        assert re.search(r"time ?out|timed out|time limit", stderr, re.IGNORECASE), "stderr must say it timed out"
        assert names_cell(stderr, nb, exp.cell)
    elif exp.outcome == STDIN:
        assert rc != 0
        assert names_cell(stderr, nb, exp.cell), f"stderr does not name cell {exp.cell}"
    else:
        raise AssertionError(exp.outcome)


# --------------------------------------------------------------------------------------
# (b) MCP: run_all_cells, then get_execution until every entry is done


@pytest.mark.corpus
@pytest.mark.timeout(240)
@pytest.mark.parametrize("rel", CASES)
def test_corpus_run_all_cells(rel, corpus, mcp: Harness):
    nb_path, exp = prepare(corpus, rel, mcp.root)
    name = nb_path.name
    before = nb_path.read_bytes()
    original = read_nb(nb_path)

    async def body(c):
        sc, res = await c.call("run_all_cells", notebook=name, stop_on_error=True,
                               timeout_s=2 if exp.outcome == TIMEOUT else exp.timeout)
        if exp.outcome == NO_KERNEL:
            assert res.is_error, f"expected a missing-kernelspec error, got {sc}"
            msg = text_of(res)
            assert exp.kernel in msg and "python3" in msg, msg
            return
        assert not res.is_error, text_of(res)

        listing = await c.ok("read_notebook", notebook=name, outputs="none")
        cells = listing["cells"]
        runnable = [x["id"] for x in cells if x["cell_type"] == "code" and x["source"].strip()]
        ex = sc["executions"]
        queued = [e["cell_id"] for e in ex]
        skipped = [s["cell_id"] for s in sc["skipped"]]
        assert queued == runnable, "run_all_cells queues the non-empty code cells, in order"
        assert sorted(queued + skipped) == sorted(x["id"] for x in cells), "every cell is queued or skipped"
        assert all(s.get("reason") for s in sc["skipped"])

        if exp.outcome == TIMEOUT:
            first = await c.wait_running(ex[0]["execution_id"])
            await c.ok("interrupt_kernel", notebook=name)
            done = await c.wait_done(first["execution_id"], 30)
            assert done["status"] == "interrupted", done
            return

        if exp.outcome == STDIN:
            first = ex[0]
            if first["status"] in ("pending", "running"):
                first = await c.ok("get_execution", execution_id=first["execution_id"], wait_s=exp.timeout)
            if first["status"] in ("pending", "running"):  # waiting for input(): cancel it
                await c.ok("cancel_execution", execution_id=first["execution_id"])
                first = await c.wait_done(first["execution_id"], 30)
                assert first["status"] in ("interrupted", "cancelled", "failed"), first
            else:
                assert first["status"] == "failed", first
                assert first["error"]["ename"] == "StdinNotImplementedError", first["error"]
            return

        final = []
        for e in ex:
            final.append(e if e["status"] in TERMINAL else await c.wait_done(e["execution_id"], exp.timeout + 60))
        status = [e["status"] for e in final]
        by_id = {x["id"]: x for x in cells}

        if exp.outcome == OK:
            assert status == ["completed"] * len(final), [(e["cell_id"], e["status"], e.get("error")) for e in final]
            if exp.image:
                with_image = [e for e in final if any(exp.image in (o.get("mime_types") or []) for o in e["outputs"])]
                assert with_image, f"no {exp.image} output in the execution results"
                _, got = await c.call("get_execution", execution_id=with_image[0]["execution_id"])
                assert any(i.mime_type == exp.image for i in images_of(got)), "image not returned as ImageContent"
            return

        assert exp.outcome == ERROR
        fail_id = next(x["id"] for x in cells if x["index"] == exp.cell)
        k = queued.index(fail_id)
        assert status[:k] == ["completed"] * k, status
        assert status[k] == "failed", final[k]
        assert final[k]["error"]["ename"] == exp.ename, final[k]["error"]
        assert status[k + 1:] == ["cancelled"] * (len(final) - k - 1), "stop_on_error cancels the rest"
        assert by_id[fail_id]["index"] == exp.cell

    mcp.run(body)

    if exp.outcome == NO_KERNEL:
        assert nb_path.read_bytes() == before
        return
    nb = validate_file(nb_path)
    if exp.outcome == OK:
        assert_ok_notebook(nb, original, exp, mcp.root)
    elif exp.outcome == ERROR:
        assert_error_notebook(nb, exp)
