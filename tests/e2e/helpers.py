"""Small helpers shared by the end-to-end tests (no fixtures here: see conftest.py)."""

from __future__ import annotations

import json
import hashlib
import os
import re
import signal
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nbformat

TERMINAL = ("completed", "failed", "cancelled", "interrupted")


def text_of(result: Any) -> str:
    """The text content items of a CallToolResult, joined."""
    parts = []
    for item in getattr(result, "content", None) or []:
        if getattr(item, "type", None) == "text":
            parts.append(item.text)
    return "\n".join(parts)


def images_of(result: Any) -> list[Any]:
    """The ImageContent items of a CallToolResult."""
    return [i for i in (getattr(result, "content", None) or []) if getattr(i, "type", None) == "image"]


def parse_time(value: Any) -> datetime:
    """started_at / finished_at: RFC 3339 text (any fraction length) or epoch seconds/ms."""
    if isinstance(value, (int, float)):
        secs = value / 1000.0 if value > 1e11 else float(value)
        return datetime.fromtimestamp(secs, tz=timezone.utc)
    assert isinstance(value, str) and value, f"not a timestamp: {value!r}"
    s = value.strip().replace("z", "Z")
    s = re.sub(r"(\.\d{6})\d+", r"\1", s)  # nanoseconds -> microseconds
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt


def read_nb(path: Path) -> nbformat.NotebookNode:
    """Reads a notebook as written (no conversion) and validates it against its own schema."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nb = nbformat.read(str(path), as_version=nbformat.NO_CONVERT)
        nbformat.validate(nb)
    return nb


def validate_file(path: Path) -> nbformat.NotebookNode:
    """The file parses as JSON and passes nbformat.validate; raises AssertionError otherwise."""
    raw = path.read_text()
    try:
        json.loads(raw)
    except ValueError as exc:
        raise AssertionError(f"{path} is not JSON after the run: {exc}") from exc
    try:
        return read_nb(path)
    except nbformat.ValidationError as exc:
        raise AssertionError(f"{path} fails nbformat.validate: {exc}") from exc


def write_nb(path: Path, cells: list[tuple[str, str]] | list[dict], **metadata: Any) -> nbformat.NotebookNode:
    """Writes an nbformat 4.5 notebook with python3 kernelspec; cells as (type, source) or dicts."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata.update(metadata)
    for c in cells:
        if isinstance(c, tuple):
            kind, source = c
            tags: list[str] = []
        else:
            kind, source, tags = c["cell_type"], c["source"], c.get("tags", [])
        maker = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell,
                 "raw": nbformat.v4.new_raw_cell}[kind]
        cell = maker(source)
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return nb


def stream_text(outputs: list[dict], name: str = "stdout") -> str:
    """Concatenated text of stream outputs (nbformat on-disk outputs or RenderedOutputs)."""
    out = []
    for o in outputs:
        if o.get("output_type") == "stream" and o.get("name") == name:
            t = o.get("text", "")
            out.append("".join(t) if isinstance(t, list) else t)
    return "".join(out)


def plain_text(output: dict) -> str:
    """text/plain of an on-disk execute_result / display_data output."""
    t = output.get("data", {}).get("text/plain", "")
    return "".join(t) if isinstance(t, list) else t


def rendered_text(sc: dict) -> str:
    """All bounded text of an execution result's RenderedOutputs."""
    return "".join(o.get("text") or "" for o in sc.get("outputs") or [])


def cell_by_id(nb: Any, cell_id: str) -> Any:
    for c in nb.cells:
        if c.get("id") == cell_id:
            return c
    raise AssertionError(f"cell {cell_id} not in notebook (ids: {[c.get('id') for c in nb.cells]})")


def is_empty_code(cell: Any) -> bool:
    src = cell.get("source", "")
    src = "".join(src) if isinstance(src, list) else src
    return cell.get("cell_type") == "code" and not src.strip()


# --------------------------------------------------------------------------------------
# Processes (by PID only).


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks); None if gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rest = raw[raw.rindex(")") + 2 :].split()  # comm may contain spaces and parentheses
    if rest[0] == "Z":
        return None
    return int(rest[19])


def pid_alive(pid: int, start_time: int | None = None) -> bool:
    st = proc_start_time(pid)
    return st is not None and (start_time is None or st == start_time)


async def wait_gone(pid: int, timeout: float) -> bool:
    """True once `pid` has exited (or become a zombie) within `timeout` seconds."""
    import anyio

    deadline = anyio.current_time() + timeout
    st = proc_start_time(pid)
    while pid_alive(pid, st):
        if anyio.current_time() >= deadline:
            return False
        await anyio.sleep(0.05)
    return True


def wait_pids_gone(pids: dict[int, int | None], timeout: float) -> list[int]:
    """Waits until none of pids is alive; returns the ones still alive at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p, st in pids.items() if pid_alive(p, st)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def _signal_group_or_pid(pid: int, sig: int) -> None:
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    try:
        if pgid > 1 and pgid != os.getpgrp():
            os.killpg(pgid, sig)
        else:  # never signal our own group (pytest) or init's
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill_pids(pids: dict[int, int | None], grace: float = 5.0) -> list[int]:
    """SIGTERM to each live PID's process group, SIGKILL after `grace` s. Returns who was alive."""
    alive = {p: st for p, st in pids.items() if pid_alive(p, st)}
    for pid in alive:
        _signal_group_or_pid(pid, signal.SIGTERM)
    still = wait_pids_gone(alive, grace)
    for pid in still:
        if pid_alive(pid, alive[pid]):
            _signal_group_or_pid(pid, signal.SIGKILL)
    wait_pids_gone({p: alive[p] for p in still}, 2.0)
    return list(alive)


def kernels_dirs_of(data_dir: Path) -> list[Path]:
    """Where a server with this data dir may put its kernels' connection files (the private
    runtime folder of `Config::kernels_dir`, outside the data dir; with or without
    XDG_RUNTIME_DIR in the server's environment): kernels' argv name it."""
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    dirs = [Path(os.environ.get("TMPDIR") or "/tmp") / f"jupyter-mcp-{os.geteuid()}" / digest]
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg):
        dirs.append(Path(xdg) / f"jupyter-mcp-{digest}")
    return dirs


def pids_mentioning(path: Path) -> dict[int, int | None]:
    """Live processes (not us) with an argv element equal to, under, or `=`-assigned `path`,
    or naming the kernels' runtime folder of `path` taken as a data dir (its kernels)."""
    found = _pids_mentioning(path)
    for runtime in kernels_dirs_of(path):
        found.update(_pids_mentioning(runtime))
    return found


def _pids_mentioning(path: Path) -> dict[int, int | None]:
    needle = str(path)
    found: dict[int, int | None] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        for raw in argv:
            arg = raw.decode(errors="replace")
            if arg == needle or arg.startswith(needle + "/") or arg.endswith("=" + needle) or (
                "=" + needle + "/" in arg
            ):
                st = proc_start_time(pid)
                if st is not None:
                    found[pid] = st
                break
    return found


class PidTracker:
    """PIDs a script started (with their start times, so a reused PID is never signalled)."""

    def __init__(self) -> None:
        self.pids: dict[int, int | None] = {}

    def remember(self, pid) -> None:
        if isinstance(pid, int) and pid > 1 and pid not in self.pids:
            self.pids[pid] = proc_start_time(pid)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM each one's process group, SIGKILL after `grace`."""
        kill_pids(self.pids, grace)


def nbclient_execute(path: Path, shared_dirs, **kw) -> nbformat.NotebookNode:
    """Runs the notebook at `path` with nbclient itself (allow_errors, in its own folder), with
    the kernel environment the server's kernels get (shared IPYTHONDIR and MPLCONFIGDIR);
    `kw` goes to NotebookClient. Returns the executed notebook (not written)."""
    import os

    from nbclient import NotebookClient

    ipython_dir, mpl_dir = shared_dirs
    saved = {k: os.environ.get(k) for k in ("IPYTHONDIR", "MPLCONFIGDIR")}
    os.environ.update(IPYTHONDIR=str(ipython_dir), MPLCONFIGDIR=str(mpl_dir))
    try:
        nb = nbformat.read(str(path), as_version=4)
        NotebookClient(nb, allow_errors=True, record_timing=False, timeout=60,
                       resources={"metadata": {"path": str(path.parent)}}, **kw).execute()
        return nb
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
