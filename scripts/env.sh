# shellcheck shell=bash
# Sourced by the other scripts (and usable by hand: `source scripts/env.sh`):
# puts the project's .venv first on PATH and sets VIRTUAL_ENV, so that the
# `python`/`python3` a kernelspec names (argv[0] = "python") is the venv's, and
# the server finds the venv's kernelspecs under $VIRTUAL_ENV/share/jupyter.
# Defines REPO_ROOT. Sets no shell options (safe to source interactively).

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VIRTUAL_ENV="$REPO_ROOT/.venv"
export VIRTUAL_ENV
# Drop any earlier copy of the venv's bin from PATH, then put it first.
_jmcp_path=":${PATH:-}:"
_jmcp_path="${_jmcp_path//:$VIRTUAL_ENV\/bin:/:}"
_jmcp_path="${_jmcp_path#:}"
_jmcp_path="${_jmcp_path%:}"
PATH="$VIRTUAL_ENV/bin${_jmcp_path:+:$_jmcp_path}"
export PATH
unset _jmcp_path
unset PYTHONHOME
hash -r 2>/dev/null || true
