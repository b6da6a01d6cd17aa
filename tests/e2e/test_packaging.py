"""Install and deploy (issue 11 item 5, SPEC §9).

- The Python wheel (maturin `bindings = "bin"`, built by scripts/setup.sh into target/wheels)
  installs into a fresh venv from the file (its dependencies ipykernel and dill from the
  package index, pinned by requirements.txt as constraints), and `jupyter-mcp doctor`, `run`
  and the daemon work from there with nothing else on PATH: no repo venv, no scripts/env.sh,
  no VIRTUAL_ENV. That is also the container image's runtime recipe (the Dockerfile installs the
  same wheel into a venv and runs the same daemon command), run outside a container.
- The release binary and the wheel's binary carry no DWARF debug info.
- The Dockerfile passes hadolint, the Kubernetes manifests pass kubernetes-validate --strict
  (both pinned in requirements.txt), and both say what SPEC §9 asks.
Every process is stopped by its own PID.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import BINARY, REPO, VENV
from helpers import kill_pids, proc_start_time, read_nb, stream_text, write_nb

WHEELS = REPO / "target" / "wheels"
K8S = REPO / "deploy" / "kubernetes"


def cargo_version() -> str:
    text = (REPO / "Cargo.toml").read_text()
    return re.search(r'\[package\][^\[]*?\nversion = "([^"]+)"', text).group(1)


def the_wheel() -> Path:
    given = os.environ.get("JUPYTER_MCP_WHEEL")
    if given:
        return Path(given)
    found = sorted(WHEELS.glob(f"jupyter_mcp-{cargo_version()}-*.whl"))
    if not found:
        pytest.fail(f"no wheel in {WHEELS}: scripts/setup.sh builds it (maturin build --release)")
    return found[-1]


def elf_section_names(path: Path) -> list[str]:
    """Section names of a 64-bit little-endian ELF file (enough to see .debug_* sections)."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, f"{path} is not ELF64 LE"
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    def header(i: int) -> tuple[int, int, int]:
        base = shoff + i * shentsize
        name = struct.unpack_from("<I", data, base)[0]
        offset, size = struct.unpack_from("<QQ", data, base + 0x18)
        return name, offset, size
    _, str_off, _ = header(shstrndx)
    names = []
    for i in range(shnum):
        name, _, _ = header(i)
        end = data.index(b"\0", str_off + name)
        names.append(data[str_off + name:end].decode())
    return names


def base_python() -> str:
    """A system interpreter outside any venv, to make the fresh venv with."""
    for cand in (getattr(sys, "_base_executable", None), shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")):
        if cand and Path(cand).exists() and not str(cand).startswith(str(VENV)):
            return str(cand)
    pytest.skip("no system python3 to make a fresh venv with")


def bare_env(home: Path, **extra: str) -> dict[str, str]:
    """Nothing but the system on PATH; a fresh HOME (no user kernelspecs); no VIRTUAL_ENV,
    no JUPYTER_*, no JUPYTER_MCP_*."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
    env.update(extra)
    return env


def test_binaries_carry_no_debug_info():
    sections = elf_section_names(BINARY)
    assert not [s for s in sections if s.startswith(".debug_")], sections
    assert ".symtab" in sections, "symbols are kept: panics and backtraces name functions"


@pytest.mark.timeout(300)
def test_the_wheel_installs_into_a_fresh_venv_and_runs_with_nothing_else_on_path(tmp_path):
    wheel = the_wheel()
    venv, home, root, data = (tmp_path / n for n in ("venv", "home", "root", "data"))
    for d in (home, root):
        d.mkdir()
    subprocess.run([base_python(), "-m", "venv", str(venv)], check=True, capture_output=True)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-c", str(REPO / "requirements.txt"), str(wheel)],
        capture_output=True, text=True, timeout=240,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    exe = venv / "bin" / "jupyter-mcp"
    assert exe.is_file(), sorted(p.name for p in (venv / "bin").iterdir())
    sections = elf_section_names(exe)
    assert not [s for s in sections if s.startswith(".debug_")], sections

    env = bare_env(home, JUPYTER_MCP_DATA_DIR=str(data))
    version = subprocess.run([str(exe), "--version"], env=env, capture_output=True, text=True)
    assert version.stdout.split() == ["jupyter-mcp", cargo_version()], version.stdout

    # doctor, called by its path in an environment that is not activated.
    doc = subprocess.run([str(exe), "doctor"], env=env, cwd=root, capture_output=True, text=True, timeout=60)
    assert doc.returncode == 0, doc.stdout + doc.stderr
    py = next(line for line in doc.stdout.splitlines() if line[5:].startswith("kernelspec python3:"))
    assert str(venv / "bin" / "python") in py, doc.stdout

    # run: one notebook, its kernel from the wheel's environment (ipykernel and dill there).
    nb = root / "hello.ipynb"
    write_nb(nb, [("code", "import sys, dill\nprint(sys.prefix)\nprint(6 * 7)")])
    run = subprocess.run([str(exe), "run", "hello.ipynb", "--timeout", "120"], env=env, cwd=root,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    out = stream_text(read_nb(nb).cells[0].outputs)
    assert out.split() == [str(venv), "42"], out

    # The image's command (Dockerfile CMD, on loopback here) from the same venv, activated
    # the way the image sets PATH: healthy, ready, and a clean exit on SIGTERM.
    env_daemon = dict(env, PATH=f"{venv / 'bin'}:/usr/bin:/bin")
    daemon = subprocess.Popen(["jupyter-mcp", "serve", "--transport", "http", "--bind", "127.0.0.1:0"],
                              env=env_daemon, cwd=root, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    started = {daemon.pid: proc_start_time(daemon.pid)}
    try:
        info = None
        while info is None or info.get("pid") != daemon.pid:
            assert daemon.poll() is None, daemon.stderr.read()
            try:
                info = json.loads((data / "daemon.json").read_text())
            except (FileNotFoundError, ValueError):
                info = None
                subprocess.run(["sleep", "0.05"])
        base = info["url"].removesuffix("/mcp")
        live = urllib.request.urlopen(base + "/health/live", timeout=10)
        assert live.status == 200
        while True:
            try:
                ready = urllib.request.urlopen(base + "/health/ready", timeout=10)
                assert ready.status == 200
                break
            except urllib.error.HTTPError as e:
                assert e.code == 503, e
                subprocess.run(["sleep", "0.05"])
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0, daemon.stderr.read()
    finally:
        if daemon.poll() is None:
            kill_pids(started)


def test_the_dockerfile_passes_hadolint_and_says_what_spec_9_asks(tmp_path):
    hadolint = shutil.which("hadolint") or str(VENV / "bin" / "hadolint")
    dockerfile = REPO / "Dockerfile"
    r = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    text = dockerfile.read_text()
    # The linter does judge: a copy that changes directory with `cd` (DL3003) is refused.
    bad = tmp_path / "Dockerfile"
    bad.write_text(text + "RUN cd /tmp && ls\n")
    assert subprocess.run([hadolint, str(bad)], capture_output=True).returncode != 0
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2, "multi-stage"
    assert re.search(r"^USER 10001", text, re.M), "non-root user"
    assert "JUPYTER_MCP_DATA_DIR=/data" in text
    assert re.search(r"^HEALTHCHECK .*\n?.*/health/live", text, re.M)
    assert '"--bind", "0.0.0.0:3000"' in text
    assert "ipykernel" in text and "dill" in text
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    svc = compose["services"]["jupyter-mcp"]
    assert svc["ports"] == ["127.0.0.1:3000:3000"], "published on loopback only"
    assert any(v.startswith("jmcp-data:/data") for v in svc["volumes"]) and "jmcp-data" in compose["volumes"]


def test_the_kubernetes_manifests_validate_and_say_what_spec_9_asks(tmp_path):
    validate = shutil.which("kubernetes-validate") or str(VENV / "bin" / "kubernetes-validate")
    manifests = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    r = subprocess.run([validate, "--strict", "--quiet", *map(str, manifests)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    docs = {d["kind"]: d for p in manifests for d in yaml.safe_load_all(p.read_text()) if d}
    # The validator does judge: an unknown field in a copy is refused.
    broken = tmp_path / "deployment.yaml"
    broken.write_text((K8S / "deployment.yaml").read_text().replace("replicas: 1", "replicas: 1\n  replica: 1"))
    assert subprocess.run([validate, "--strict", "--quiet", str(broken)], capture_output=True).returncode != 0

    kustom = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustom["resources"]) == sorted(p.name for p in manifests)
    dep = docs["Deployment"]["spec"]
    assert dep["replicas"] == 1 and dep["strategy"]["type"] == "Recreate"
    pod = dep["template"]["spec"]
    (c,) = pod["containers"]
    args = c["args"]
    grace = float(args[args.index("--shutdown-grace") + 1])
    assert pod["terminationGracePeriodSeconds"] > grace
    assert pod["securityContext"]["fsGroup"] == 10001 and pod["securityContext"]["runAsNonRoot"]
    assert c["startupProbe"]["httpGet"]["path"] == "/health/live"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert c["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert set(c["resources"]) == {"requests", "limits"}
    token = next(e for e in c["env"] if e["name"] == "JUPYTER_MCP_TOKEN")
    assert token["valueFrom"]["secretKeyRef"]["name"] == docs["Secret"]["metadata"]["name"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    state = next(v for v in pod["volumes"] if v["name"] == mounts["/data"]["name"])
    assert state["persistentVolumeClaim"]["claimName"] == docs["PersistentVolumeClaim"]["metadata"]["name"]
    svc = docs["Service"]["spec"]
    assert svc["selector"] == dep["selector"]["matchLabels"] and svc["ports"][0]["port"] == 3000
