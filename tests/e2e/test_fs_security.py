"""File-system security (issue 9 items 1, 2, 3, 6; issue 8 item 7) through the release binary.

- A racing agent swaps a folder of the root for a symlink to a canary folder beside the root
  while insert_cell calls run: the canary never changes.
- Special files named *.ipynb (FIFO, folder, socket, a device through a symlink) get a clear
  error at once, never a hang, and do not starve other tools.
- Kernel tools refuse impossible notebooks as the notebook tools do.
- One file reached through a symlinked folder is one notebook: one kernel.
- Kernel code cannot get the checkpoint key: not by the data dir's path, not from its argv
  or environment, not from the server's /proc entries.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import subprocess
import threading
from pathlib import Path

import anyio
import pytest

from conftest import BINARY, VENV
from helpers import kill_pids, pids_mentioning, read_nb, stream_text, text_of, write_nb

# A hang guard (a broken server would otherwise block the suite), not a timing assertion.
HANG_GUARD_S = 120


def snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_symlink_swapped_in_during_edits_never_writes_outside(mcp):
    canary = mcp.base / "canary"
    canary.mkdir()
    (mcp.root / "sub").mkdir()
    write_nb(mcp.root / "sub" / "n.ipynb", [("code", "1")])
    write_nb(canary / "n.ipynb", [("code", "canary")])
    before = snapshot(canary)
    stop = threading.Event()
    swaps = [0]

    def swapper() -> None:
        sub, real = mcp.root / "sub", mcp.root / "sub-real"
        while not stop.is_set():
            os.rename(sub, real)
            os.symlink(canary, sub)
            stop.wait(0.002)
            os.unlink(sub)
            os.rename(real, sub)
            swaps[0] += 1
            # Half the time in place, half swapped, so that edits resolve the real folder
            # and then meet the swap at some point of their write (no timing is asserted).
            stop.wait(0.002)

    async def body(c):
        t = threading.Thread(target=swapper)
        t.start()
        try:
            outcomes = {"ok": 0, "error": 0}
            for i in range(200):
                _, res = await c.call("insert_cell", notebook="sub/n.ipynb", source=f"x = {i}")
                outcomes["error" if res.is_error else "ok"] += 1
        finally:
            stop.set()
            t.join()
        return outcomes

    outcomes = mcp.run(body)
    assert swaps[0] > 0
    assert snapshot(canary) == before, f"the canary beside the root changed ({outcomes})"
    assert outcomes["ok"] > 0, "some edits must have gone through between the swaps"


def test_special_files_are_refused_at_once_and_starve_nothing(mcp):
    root = mcp.root
    os.mkfifo(root / "fifo.ipynb")
    (root / "adir.ipynb").mkdir()
    os.symlink("/dev/zero", root / "zero.ipynb")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock.ipynb"))
    write_nb(root / "ok.ipynb", [("code", "1")])

    async def body(c):
        with anyio.fail_after(HANG_GUARD_S):
            for name, word in [("fifo.ipynb", "FIFO"), ("adir.ipynb", "folder"),
                               ("sock.ipynb", "socket"), ("zero.ipynb", "outside")]:
                for tool, args in [("read_notebook", {}), ("insert_cell", {"source": "1"})]:
                    msg = await c.err(tool, notebook=name, **args)
                    assert word in msg, f"{tool}({name}): {msg}"
            # Many at once: none may hold a blocking thread.
            results = await asyncio.gather(*[c.call("read_notebook", notebook="fifo.ipynb")
                                             for _ in range(100)])
            assert all(res.is_error for _, res in results)
            await c.ok("read_notebook", notebook="ok.ipynb")

    try:
        mcp.run(body)
    finally:
        sock.close()


def test_kernel_tools_refuse_impossible_notebooks(mcp):
    outside = mcp.base / "outside"
    outside.mkdir()
    os.symlink(outside / "gone.ipynb", mcp.root / "dangling.ipynb")
    (mcp.root / "adir.ipynb").mkdir()

    async def body(c):
        with anyio.fail_after(HANG_GUARD_S):
            assert "NUL" in await c.err("start_kernel", notebook="a\x00b.ipynb")
            assert "255" in await c.err("start_kernel", notebook="x" * 300 + ".ipynb")
            assert "outside" in await c.err("start_kernel", notebook="dangling.ipynb")
            assert "folder" in await c.err("execute_code", notebook="adir.ipynb", code="1")
            assert "folder" in await c.err("save_environment", notebook="adir.ipynb", name="c")
            assert (await c.ok("list_kernels"))["kernels"] == []

    mcp.run(body)
    assert list(outside.iterdir()) == []


def test_one_file_through_a_symlinked_folder_is_one_notebook(mcp):
    (mcp.root / "real").mkdir()
    write_nb(mcp.root / "real" / "n.ipynb", [("code", "1")])
    os.symlink("real", mcp.root / "alias")

    async def body(c):
        a = await c.ok("execute_code", notebook="real/n.ipynb", code="import os; os.getpid()")
        b = await c.ok("execute_code", notebook="alias/n.ipynb", code="import os; os.getpid()")
        assert a["status"] == b["status"] == "completed"
        kernels = (await c.ok("list_kernels"))["kernels"]
        assert len(kernels) == 1, kernels
        assert kernels[0]["notebook"] == "real/n.ipynb"

    mcp.run(body)


PROBE = r'''
import os, glob, json
found = {}
data = DATA
def grab(label, path):
    try:
        with open(path, 'rb') as f:
            found[label] = f.read().hex()
    except Exception as e:
        found[label] = 'refused: ' + type(e).__name__
grab('by_path', os.path.join(data, 'secret.key'))
cmd = open('/proc/self/cmdline', 'rb').read().decode(errors='replace')
found['argv_names_data'] = data in cmd
for arg in cmd.split('\0'):
    if arg.endswith('.json'):
        d = os.path.dirname(arg)
        for cand in [os.path.join(d, 'secret.key'), os.path.join(d, '..', 'secret.key'),
                     os.path.join(d, '..', '..', 'secret.key')]:
            grab('near_connection_file:' + cand, cand)
found['env'] = {k: v for k, v in os.environ.items() if k.startswith('JUPYTER_MCP') or data in v}
for p in [os.getppid()] + [int(x) for x in os.listdir('/proc') if x.isdigit()]:
    try:
        raw = open(f'/proc/{p}/cmdline', 'rb').read()
    except Exception:
        continue
    if b'jupyter-mcp' in raw and b'serve' in raw:
        grab(f'server_environ', f'/proc/{p}/environ')
        grab(f'server_mem_maps', f'/proc/{p}/maps')
        found['server_mem_maps'] = found['server_mem_maps'][:20]
found['nnp'] = [l for l in open('/proc/self/status') if 'NoNewPrivs' in l or 'Seccomp' in l]
print(json.dumps(found))
'''


def test_kernel_code_cannot_read_the_checkpoint_key(mcp):
    secret_env = "ab" * 32
    base_env = mcp.env
    mcp.env = lambda: {**base_env(), "JUPYTER_MCP_SECRET": secret_env}
    write_nb(mcp.root / "k.ipynb", [("code", "1")])
    # A key file as a previous run without JUPYTER_MCP_SECRET would have left it.
    mcp.data.mkdir(exist_ok=True)
    key = os.urandom(32)
    (mcp.data / "secret.key").write_bytes(key)
    os.chmod(mcp.data / "secret.key", 0o600)

    async def body(c):
        code = PROBE.replace("DATA", repr(str(mcp.data)))
        sc, res = await c.call("execute_code", notebook="k.ipynb", code=code)
        return sc, text_of(res)

    sc, text = mcp.run(body)
    print("probe result:", text)
    assert key.hex() not in text, "the key file's bytes reached a tool result"
    if os.geteuid() != 0:
        assert secret_env not in text and secret_env.encode().hex() not in text
    assert '"by_path": "refused' in text, text
    assert '"argv_names_data": false' in text, text
    assert '"env": {}' in text, text
    # The server is non-dumpable and kernels are in a Landlock domain; a kernel running as
    # root keeps CAP_SYS_PTRACE and can still read /proc/<server>/environ (see the report).
    if os.geteuid() != 0:
        assert "server_environ" not in text or '"server_environ": "refused' in text, text


def test_a_data_dir_inside_the_notebook_folder_leaves_the_kernel_able_to_create_files(mcp):
    # Landlock can only allow: confining a kernel away from a data dir that lies inside its own
    # folder would stop it from creating files there. The server leaves such a kernel
    # unconfined (and warns) rather than break the user's code.
    mcp.data = mcp.root / ".jupyter-mcp"
    write_nb(mcp.root / "n.ipynb", [("code", "1")])

    async def body(c):
        code = "open('made.txt', 'w').write('ok')\nprint(open('made.txt').read())"
        sc, res = await c.call("execute_code", notebook="n.ipynb", code=code)
        return sc, text_of(res)

    sc, text = mcp.run(body)
    assert sc["status"] == "completed", text
    assert (mcp.root / "made.txt").read_text() == "ok"


@pytest.mark.timeout(180)
def test_a_fresh_account_starts_its_first_confined_kernel(tmp_path):
    # A new user has no ~/.ipython, and the default data dir (~/.local/share/jupyter-mcp) puts
    # `~` among the folders where a confined kernel cannot create entries: IPython could not
    # create its profile folder and the very first kernel died on start. The usual per-user
    # folders are now created before the kernel is confined; other new entries right in `~`
    # stay refused (README "Safety").
    home, proj = tmp_path / "home", tmp_path / "home" / "proj"
    proj.mkdir(parents=True)
    nb = proj / "n.ipynb"
    write_nb(nb, [("code", "import os\nprint(os.path.isdir(os.path.expanduser('~/.ipython')))")])
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTER_MCP_", "IPYTHONDIR", "XDG_", "MPLCONFIGDIR"))}
    env.update(HOME=str(home), PATH=f"{VENV / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
               VIRTUAL_ENV=str(VENV))
    try:
        proc = subprocess.run([str(BINARY), "run", str(nb)], env=env, cwd=proj, timeout=150,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        out = read_nb(nb)["cells"][0]["outputs"]
        assert stream_text(out).strip() == "True", out
    finally:
        leftovers = pids_mentioning(home)
        if leftovers:
            kill_pids(leftovers)
