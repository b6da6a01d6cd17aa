"""Fixtures for the end-to-end suite: the release binary driven by the official MCP SDK.

Each test gets a fresh notebook root and data dir, and a `Harness` whose `run(body)`
spawns `jupyter-mcp serve --root ROOT --data-dir DATA --stop-kernels-on-exit` over
stdio, opens a `ClientSession`, and awaits `body(client)` inside `asyncio.run` (one
event loop per session: nothing async outlives a test). `client.call(tool, **args)`
returns `(structured_content, CallToolResult)`.

Cleanup, in this order: before the session closes, `list_kernels` collects every
kernel PID (PIDs seen in any result are collected too); the session closes (the
server should stop its kernels); then each collected PID still alive -- checked
against its recorded start time so a reused PID is never touched -- gets SIGTERM
to its process group, SIGKILL after 5 s. Last, any process whose command line names
this test's data dir (the server, a kernel via its connection file) is killed the
same way. Processes are only ever found by PID or by this test's unique path, never
by name.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from helpers import kill_pids, pids_mentioning, proc_start_time, text_of, wait_pids_gone  # noqa: E402

REPO = HERE.parents[1]
VENV = REPO / ".venv"
BINARY = Path(os.environ.get("JUPYTER_MCP_BIN", REPO / "target" / "release" / "jupyter-mcp"))
CORPUS = Path(os.environ.get("JUPYTER_MCP_CORPUS", REPO.parent / "shared" / "corpus"))

# Default ceiling for one tool call; tests that wait longer pass read_timeout.
CALL_TIMEOUT_S = 120.0


# --------------------------------------------------------------------------------------
# Environment for the server (and hence its kernels).


def server_env(data_dir: Path, ipython_dir: Path, mpl_dir: Path) -> dict[str, str]:
    """Merged by the SDK over HOME/LOGNAME/PATH/SHELL/TERM/USER of this process."""
    path = os.environ.get("PATH", "/usr/bin:/bin")
    env = {
        "PATH": f"{VENV / 'bin'}:{path}",
        "VIRTUAL_ENV": str(VENV),
        "RUST_BACKTRACE": "1",
        "IPYTHONDIR": str(ipython_dir),
        "MPLCONFIGDIR": str(mpl_dir),
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    for key in ("LANG", "LC_ALL", "TMPDIR", "RUST_LOG"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def full_env(data_dir: Path, ipython_dir: Path, mpl_dir: Path) -> dict[str, str]:
    """For subprocess.run of the binary: a clean environment (no inherited JUPYTER_MCP_*)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_MCP_")}
    env.update(server_env(data_dir, ipython_dir, mpl_dir))
    return env


@pytest.fixture(scope="session")
def shared_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """IPYTHONDIR and MPLCONFIGDIR shared by all kernels of the run (matplotlib's font
    cache is built once, not per test)."""
    base = tmp_path_factory.mktemp("kernel-home")
    (base / "ipython").mkdir()
    (base / "mpl").mkdir()
    return base / "ipython", base / "mpl"


@pytest.fixture(scope="session")
def binary() -> Path:
    if not BINARY.is_file() or not os.access(BINARY, os.X_OK):
        pytest.fail(f"{BINARY} is missing: run scripts/setup.sh (cargo build --release) first")
    return BINARY


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.fail(f"corpus {CORPUS} not found (expected ../shared/corpus next to the repo; "
                    "set JUPYTER_MCP_CORPUS)")
    return CORPUS


# --------------------------------------------------------------------------------------
# The MCP client side.


class Client:
    """What a test body gets: the live session plus `call`."""

    def __init__(self, session: ClientSession, harness: "Harness") -> None:
        self.session = session
        self.harness = harness
        self.root = harness.root
        self.data = harness.data

    async def call(self, tool: str, /, read_timeout: float | None = None, **args: Any):
        """Calls `tool`; returns (structured_content, CallToolResult). Never asserts."""
        timeout = read_timeout
        if timeout is None:
            waits = [v for k, v in args.items() if k in ("timeout_s", "wait_s") and isinstance(v, (int, float))]
            timeout = CALL_TIMEOUT_S + (max(waits) if waits else 0)
        result = await self.session.call_tool(tool, args, read_timeout_seconds=timeout)
        self.harness.note_pids(result.structured_content)
        self.harness.log(f"{tool}({_short(args)}) -> is_error={result.is_error} "
                         f"{_short(result.structured_content) if not result.is_error else text_of(result)[:300]}")
        return result.structured_content, result

    async def ok(self, tool: str, /, read_timeout: float | None = None, **args: Any):
        """Like call, but the call must not be a tool error; returns structured_content."""
        sc, res = await self.call(tool, read_timeout=read_timeout, **args)
        assert not res.is_error, f"{tool}({_short(args)}) failed: {text_of(res)}"
        assert isinstance(sc, dict), f"{tool} returned no structuredContent: {res}"
        return sc

    async def err(self, tool: str, /, **args: Any) -> str:
        """The call must be a tool error (isError, not a protocol error); returns its text."""
        sc, res = await self.call(tool, **args)
        assert res.is_error, f"{tool}({_short(args)}) should have failed, got {sc!r}"
        msg = text_of(res)
        assert msg.strip(), f"{tool} failed without a message"
        return msg

    async def wait_done(self, execution_id: str, timeout: float = 120.0, step: float = 10.0) -> dict:
        """Polls get_execution(wait_s=...) until the status is terminal."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            sc = await self.ok("get_execution", execution_id=execution_id, wait_s=max(0, min(step, left)))
            if sc["status"] not in ("pending", "running"):
                return sc
            if left <= 0:
                raise AssertionError(f"execution {execution_id} still {sc['status']} after {timeout}s")

    async def wait_running(self, execution_id: str, timeout: float = 60.0) -> dict:
        """Polls get_execution until the execution is `running` (a kernel start on a loaded
        machine can take seconds); fails if it ends or stays pending past `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            sc = await self.ok("get_execution", execution_id=execution_id)
            if sc["status"] == "running":
                return sc
            if sc["status"] != "pending" or time.monotonic() > deadline:
                raise AssertionError(f"execution {execution_id} is {sc['status']}, not running: {sc}")
            await anyio.sleep(0.05)

    async def kernel_pids(self) -> dict[str, int]:
        sc = await self.ok("list_kernels")
        return {k["notebook"]: k["pid"] for k in sc["kernels"] if isinstance(k.get("pid"), int)}


def _single_leaf(exc: BaseException) -> BaseException | None:
    """The one real exception inside nested single-member exception groups, else None."""
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc


def _short(value: Any, limit: int = 400) -> str:
    try:
        s = json.dumps(value, default=str)
    except Exception:
        s = repr(value)
    return s if len(s) <= limit else s[:limit] + f"...({len(s)} chars)"


class Harness:
    """One test's server: spawn it with `run(body)`, as often as the test needs."""

    def __init__(self, base: Path, binary: Path, shared: tuple[Path, Path]) -> None:
        self.base = base
        self.root = base / "root"
        self.data = base / "data"
        self.root.mkdir()
        self.binary = binary
        self.ipython_dir, self.mpl_dir = shared
        self.stderr_path = base / "server.stderr"
        self.pids: dict[int, int | None] = {}  # kernel PID -> start time
        self.transcript: list[str] = []
        self.extra_args: list[str] = []

    def args(self) -> list[str]:
        return ["serve", "--root", str(self.root), "--data-dir", str(self.data),
                "--stop-kernels-on-exit", *self.extra_args]

    def env(self) -> dict[str, str]:
        return server_env(self.data, self.ipython_dir, self.mpl_dir)

    def log(self, line: str) -> None:
        self.transcript.append(line)

    def note_pids(self, value: Any) -> None:
        """Remembers every kernel `pid` in a result (start_kernel, list_kernels, ...)."""
        if isinstance(value, dict):
            pid = value.get("pid")
            if isinstance(pid, int) and pid > 1 and pid not in self.pids:
                st = proc_start_time(pid)
                if st is not None:
                    self.pids[pid] = st
            for v in value.values():
                if isinstance(v, (dict, list)):
                    self.note_pids(v)
        elif isinstance(value, list):
            for v in value:
                self.note_pids(v)

    def run(self, body: Callable[[Client], Awaitable[Any]]) -> Any:
        """Spawns the server, runs `body(client)` in a fresh event loop, shuts the server down."""
        try:
            return asyncio.run(self._session(body))
        except BaseExceptionGroup as group:  # anyio task groups wrap the test's own failure
            leaf = _single_leaf(group)
            if leaf is None:
                raise
            raise leaf.with_traceback(leaf.__traceback__) from None

    async def _session(self, body: Callable[[Client], Awaitable[Any]]) -> Any:
        params = StdioServerParameters(command=str(self.binary), args=self.args(), env=self.env(),
                                       cwd=str(self.root))
        with open(self.stderr_path, "a") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    with anyio.fail_after(30):
                        await session.initialize()
                    client = Client(session, self)
                    try:
                        return await body(client)
                    finally:
                        try:
                            with anyio.fail_after(15):
                                await client.call("list_kernels")
                        except Exception as exc:  # the test's own failure matters more
                            self.log(f"list_kernels at teardown failed: {exc!r}")

    def cleanup(self) -> list[str]:
        """Kills what is left; returns descriptions of what had to be killed."""
        problems: list[str] = []
        # Kernels named by the server: give --stop-kernels-on-exit a moment first.
        alive = wait_pids_gone(self.pids, 3.0)
        if alive:
            problems.append(f"kernel pids still alive after the server exited: {alive}")
            kill_pids({p: self.pids[p] for p in alive})
        left = pids_mentioning(self.data)
        if left:
            problems.append(f"processes naming {self.data} still alive: {sorted(left)}")
            kill_pids(left)
        return problems

    def stderr_tail(self, lines: int = 80) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no server stderr)"
        return "\n".join(text.splitlines()[-lines:])


@pytest.fixture
def mcp(tmp_path: Path, binary: Path, shared_dirs: tuple[Path, Path]):
    """A Harness: `mcp.run(async_body)`; `mcp.root` is the notebook root."""
    harness = Harness(tmp_path, binary, shared_dirs)
    try:
        yield harness
    finally:
        problems = harness.cleanup()
        print("---- MCP transcript ----")
        print("\n".join(harness.transcript[-60:]))
        print("---- server stderr (tail) ----")
        print(harness.stderr_tail())
        for p in problems:
            print("cleanup:", p)


def copy_corpus_notebook(corpus_dir: Path, rel: str, dest_dir: Path) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / Path(rel).name
    shutil.copyfile(corpus_dir / rel, dest)
    return dest


@pytest.fixture
def dirs(tmp_path: Path):
    """(base, root, data) for tests that start and kill servers themselves; whatever still
    mentions this data dir afterwards (servers, kernels) is stopped by PID."""
    root, data = tmp_path / "root", tmp_path / "data"
    for d in (root, data, tmp_path / "ipython"):
        d.mkdir()
    yield tmp_path, root, data
    leftovers = pids_mentioning(data)
    if leftovers:
        kill_pids(leftovers)
