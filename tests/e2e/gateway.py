"""A real Jupyter Kernel Gateway or Jupyter Server on 127.0.0.1 for the remote-kernel tests.

`Gateway.start(kind, workdir)` runs `jupyter kernelgateway` (PyPI jupyter_kernel_gateway) or
`jupyter server` (PyPI jupyter_server) on a free port with a random token, in its own process
group, with `workdir` as the kernels' working directory; `stop()` ends that process group by its
own PID (SIGTERM, then SIGKILL). `rest(method, path)` calls its REST API with the token.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE.parents[1] / ".venv"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gateway:
    def __init__(self, kind: str, proc: subprocess.Popen, port: int, token: str, workdir: Path, log: Path):
        self.kind, self.proc, self.port, self.token = kind, proc, port, token
        self.workdir, self.log = workdir, log
        self.url = f"http://127.0.0.1:{port}"

    @staticmethod
    def command(kind: str, port: int, token: str, workdir: Path) -> list[str]:
        py = str(VENV / "bin" / "python")
        if kind == "kernelgateway":
            return [py, "-m", "kernel_gateway", "--KernelGatewayApp.ip=127.0.0.1",
                    f"--KernelGatewayApp.port={port}", f"--KernelGatewayApp.auth_token={token}",
                    "--JupyterWebsocketPersonality.list_kernels=True",
                    "--KernelGatewayApp.port_retries=0"]
        if kind == "server":
            return [py, "-m", "jupyter_server", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
                    f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={workdir}",
                    "--ServerApp.open_browser=False", "--ServerApp.port_retries=0",
                    *(["--allow-root"] if os.geteuid() == 0 else [])]
        raise ValueError(kind)

    @classmethod
    def start(cls, kind: str, workdir: Path, port: int | None = None, token: str | None = None) -> "Gateway":
        workdir.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        token = token or secrets.token_hex(16)
        env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_MCP_")}
        env["PATH"] = f"{VENV / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        env["VIRTUAL_ENV"] = str(VENV)
        env["JUPYTER_PLATFORM_DIRS"] = "1"
        for d in ("ipython", "mpl", "jupyter-runtime", "jupyter-config"):
            (workdir.parent / f".{kind}-{d}").mkdir(exist_ok=True)
        env["IPYTHONDIR"] = str(workdir.parent / f".{kind}-ipython")
        env["MPLCONFIGDIR"] = str(workdir.parent / f".{kind}-mpl")
        env["JUPYTER_RUNTIME_DIR"] = str(workdir.parent / f".{kind}-jupyter-runtime")
        env["JUPYTER_CONFIG_DIR"] = str(workdir.parent / f".{kind}-jupyter-config")
        log = workdir.parent / f"{kind}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(cls.command(kind, port, token, workdir), cwd=workdir, env=env,
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        gw = cls(kind, proc, port, token, workdir, log)
        gw.wait_ready()
        return gw

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                status, _ = self.rest("GET", "/api/kernelspecs")
                if status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.kind} not ready after {timeout} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def rest(self, method: str, path: str, token: str | None = None) -> tuple[int, object]:
        req = urllib.request.Request(self.url + path, method=method,
                                     headers={"Authorization": f"token {token or self.token}"},
                                     data=b"{}" if method == "POST" else None)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                body = r.read()
                return r.status, json.loads(body) if body else None
        except urllib.error.HTTPError as e:
            return e.code, None

    def kernel_ids(self) -> list[str]:
        status, body = self.rest("GET", "/api/kernels")
        assert status == 200, status
        return [k["id"] for k in body]

    def stop(self) -> None:
        """Ends the gateway and its kernels (its own process group, by its PID)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return "(no log)"


if __name__ == "__main__":  # manual check: python tests/e2e/gateway.py kernelgateway /tmp/x
    g = Gateway.start(sys.argv[1], Path(sys.argv[2]))
    print(g.url, g.token, g.kernel_ids())
    g.stop()
