#!/usr/bin/env bash
# Prepare everything the demo, the tests and the benchmark need, idempotently:
#   0. Debian fuse3 (apt-get, only when missing and running as root)
#   1. .venv at the repository root (python3 -m venv), if missing
#   2. pip install -r requirements.txt, skipped while .venv/.requirements.sha256
#      matches the requirements (and the interpreter) it was installed from
#   3. check that ipykernel's wheel put the python3 kernelspec into
#      .venv/share/jupyter/kernels/python3 (repairs it if not)
#   4. npm ci in tests/ts (the official TypeScript MCP SDK clients of tests/e2e/test_clients.py),
#      skipped while tests/ts/node_modules/.lock.sha256 matches package-lock.json
#   4b. Debian chromium + chromium-driver (apt-get, only when missing) for the web view test
#   5. cargo build --release --locked (without --locked when there is no Cargo.lock)
#   6. the Python wheel carrying that binary (maturin build --release, into target/wheels),
#      reusing step 5's artifacts; skipped while the wheel is newer than the binary
# One line per step on stdout; tools' own output only when they fail.
# Environment: PYTHON (default python3) picks the interpreter for a new venv;
# SETUP_SKIP_CARGO=1 skips steps 5 and 6 (Python-only use, e.g. the raw half of the bench).
# Exports nothing: scripts source scripts/env.sh afterwards.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
VENV="$REPO_ROOT/.venv"
PY="${PYTHON:-python3}"
STAMP="$VENV/.requirements.sha256"

step() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: FAILED: %s\n' "$*" >&2; exit 1; }

# Runs a command quietly; on failure shows its output and stops.
quiet() {
    local log
    log="$(mktemp "${TMPDIR:-/tmp}/jmcp-setup.XXXXXX")"
    if "$@" >"$log" 2>&1; then
        rm -f "$log"
    else
        local rc=$?
        tail -n 60 "$log" >&2
        rm -f "$log"
        die "'$*' exited with $rc"
    fi
}

# 0. Debian fuse3 (libfuse3 + fusermount3: the frozen-mount tests of tests/e2e/fusefs.py)
if command -v fusermount3 >/dev/null 2>&1 && ldconfig -p 2>/dev/null | grep -q 'libfuse3\.so\.3'; then
    step "apt: fuse3 present"
elif command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == "0" ]]; then
    step "apt: installing fuse3"
    DEBIAN_FRONTEND=noninteractive quiet apt-get install -y -qq --no-install-recommends fuse3
else
    step "apt: fuse3 missing and cannot be installed here (the frozen-mount tests will skip)"
fi

# 1. venv
if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    step "venv: $VENV exists ($("$VENV/bin/python" -c 'import platform; print(platform.python_version())'))"
else
    command -v "$PY" >/dev/null 2>&1 || die "$PY not found; install Python 3.11 or set PYTHON"
    step "venv: creating $VENV with $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
    rm -rf "$VENV"
    quiet "$PY" -m venv "$VENV"
fi

# 2. Python packages
want="$( { cat requirements.txt; "$VENV/bin/python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    step "pip: requirements.txt already installed (stamp $(basename "$STAMP") matches)"
else
    step "pip: installing requirements.txt into .venv (first time takes ~1 min)"
    rm -f "$STAMP"
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
        quiet "$VENV/bin/python" -m pip install --quiet --no-input -r requirements.txt
    printf '%s\n' "$want" >"$STAMP"
fi

# 3. kernelspec (ipykernel's wheel ships share/jupyter/kernels/python3 as data files)
KSPEC="$VENV/share/jupyter/kernels/python3/kernel.json"
if [[ -f "$KSPEC" ]]; then
    step "kernelspec: python3 at ${KSPEC#"$REPO_ROOT"/}"
else
    step "kernelspec: python3 missing from .venv, running ipykernel install --sys-prefix"
    quiet "$VENV/bin/python" -m ipykernel install --sys-prefix
    [[ -f "$KSPEC" ]] || die "ipykernel install did not create $KSPEC"
fi

# 3b. bash kernelspec (bash_kernel ships no data files; its installer writes one)
BSPEC="$VENV/share/jupyter/kernels/bash/kernel.json"
# Its argv names the interpreter by absolute path: a venv made elsewhere (or a worktree's
# symlinked one) leaves a kernelspec that cannot start; rewrite it then.
bspec_ok() {
    [[ -f "$BSPEC" ]] && "$VENV/bin/python" -c 'import json, os, sys; sys.exit(not os.access(json.load(open(sys.argv[1]))["argv"][0], os.X_OK))' "$BSPEC"
}
if bspec_ok; then
    step "kernelspec: bash at ${BSPEC#"$REPO_ROOT"/}"
else
    step "kernelspec: bash missing from .venv or stale, running bash_kernel.install --sys-prefix"
    quiet "$VENV/bin/python" -m bash_kernel.install --sys-prefix
    [[ -f "$BSPEC" ]] || die "bash_kernel.install did not create $BSPEC"
fi

# 4. TypeScript MCP SDK clients (node 20 + npm from Debian: apt-get install nodejs npm)
TS_DIR="$REPO_ROOT/tests/ts"
TS_STAMP="$TS_DIR/node_modules/.lock.sha256"
ts_want="$(sha256sum "$TS_DIR/package-lock.json" | cut -d' ' -f1)"
if [[ -f "$TS_STAMP" && "$(cat "$TS_STAMP")" == "$ts_want" ]]; then
    step "npm: tests/ts already installed (stamp matches package-lock.json)"
else
    command -v npm >/dev/null 2>&1 || die "npm not found; install node 20 and npm (apt-get install nodejs npm)"
    step "npm: ci in tests/ts (TypeScript MCP SDK 1.32.2 and 1.12.3)"
    (cd "$TS_DIR" && quiet npm ci --no-audit --no-fund)
    printf '%s\n' "$ts_want" >"$TS_STAMP"
fi

# 4b. headless Chromium for the web view's browser test (tests/e2e/test_web_view.py),
#     from Debian's packages (Playwright and Selenium Manager cannot download browsers here)
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    step "chromium: $(chromium --version 2>/dev/null | head -n1) and chromedriver present"
elif command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == "0" ]]; then
    step "chromium: installing Debian chromium and chromium-driver (apt-get)"
    quiet apt-get update -q
    DEBIAN_FRONTEND=noninteractive quiet apt-get install -y -q --no-install-recommends chromium chromium-driver
else
    step "chromium: missing and apt-get not usable as this user; the web view browser test will be skipped"
fi

# 5. the server binary
if [[ "${SETUP_SKIP_CARGO:-0}" == "1" ]]; then
    step "cargo: skipped (SETUP_SKIP_CARGO=1)"
else
    command -v cargo >/dev/null 2>&1 || die "cargo not found; install a Rust toolchain (rustup)"
    locked=()
    if [[ -f Cargo.lock ]]; then locked=(--locked); fi
    step "cargo: build --release ${locked[*]:-} (cold build takes ~2-3 min)"
    quiet cargo build --release "${locked[@]}"
    [[ -x target/release/jupyter-mcp ]] || die "target/release/jupyter-mcp was not built"
fi

# 6. the wheel (pyproject.toml: maturin, bindings = "bin"); tests/e2e/test_packaging.py installs it
if [[ "${SETUP_SKIP_CARGO:-0}" != "1" ]]; then
    version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
    wheel="$(ls -t target/wheels/jupyter_mcp-"$version"-*.whl 2>/dev/null | head -n 1 || true)"
    if [[ -n "$wheel" && "$wheel" -nt target/release/jupyter-mcp ]]; then
        step "wheel: $wheel is newer than the binary"
    else
        step "wheel: maturin build --release (reuses the release build)"
        rm -f target/wheels/jupyter_mcp-*.whl
        quiet "$VENV/bin/maturin" build --release "${locked[@]}" --out target/wheels
        wheel="$(ls -t target/wheels/jupyter_mcp-"$version"-*.whl 2>/dev/null | head -n 1 || true)"
        [[ -n "$wheel" ]] || die "maturin did not write target/wheels/jupyter_mcp-$version-*.whl"
    fi
fi
