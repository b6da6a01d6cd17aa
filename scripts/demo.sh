#!/usr/bin/env bash
# A two-minute tour: set up, execute a real notebook headless with `jupyter-mcp run`,
# show the result, then print how to register the server with MCP clients.
#   scripts/demo.sh [ROOT]     ROOT: the notebook folder used in the client snippets
#                              (default: the demo's scratch folder)
# Nothing keeps running afterwards: `run` shuts its kernel down (checked below).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
bash scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh

BIN="$REPO_ROOT/target/release/jupyter-mcp"
CORPUS="$(dirname "$REPO_ROOT")/shared/corpus"
# matplotlib (inline SVG figure) and numpy; both run cleanly on the pinned stack.
# (nbconvert/notebook2.ipynb does not: IPython 9 removed set_matplotlib_formats.)
NOTEBOOKS=(nbconvert/svg.ipynb nbconvert/prompt_numbers.ipynb)

scratch="$(mktemp -d "${TMPDIR:-/tmp}/jupyter-mcp-demo.XXXXXX")"
ROOT="$(realpath -m "${1:-$scratch/notebooks}")"
mkdir -p "$scratch/notebooks"

for rel in "${NOTEBOOKS[@]}"; do
    src="$CORPUS/$rel"
    if [[ ! -f "$src" ]]; then
        echo "demo: $src not found; using a notebook written here instead" >&2
        src="$scratch/hello.ipynb"
        python - "$src" <<'EOF'
import sys, nbformat
nb = nbformat.v4.new_notebook(cells=[
    nbformat.v4.new_code_cell("import numpy as np\nnp.arange(6).reshape(2, 3)"),
    nbformat.v4.new_code_cell("print('hello from jupyter-mcp')"),
])
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbformat.write(nb, sys.argv[1])
EOF
    fi
    copy="$scratch/notebooks/$(basename "$src")"
    cp "$src" "$copy"
    chmod u+w "$copy"  # the shared corpus is read-only
    echo
    echo "==> jupyter-mcp run $(basename "$copy")"
    (cd "$scratch/notebooks" && "$BIN" run "$(basename "$copy")" --timeout 120 --data-dir "$scratch/data")
    echo "executed notebook: $copy"
    python - "$copy" <<'EOF'
import sys, nbformat
nb = nbformat.read(sys.argv[1], as_version=nbformat.NO_CONVERT)
nbformat.validate(nb)
for i, c in enumerate(nb.cells):
    if c.cell_type != "code":
        continue
    kinds = []
    for o in c.get("outputs", []):
        kinds.append(o.output_type + ("[" + ",".join(o.get("data", {})) + "]" if "data" in o else ""))
    print(f"  cell {i} In [{c.get('execution_count') or ' '}]: {', '.join(kinds) or '(no output)'}")
EOF
done

# `run` must not leave a kernel behind: look for processes naming this demo's data dir.
left=()
for f in /proc/[0-9]*/cmdline; do
    if tr '\0' '\n' <"$f" 2>/dev/null | grep -qF -- "$scratch/data"; then
        pid="${f#/proc/}"; left+=("${pid%/cmdline}")
    fi
done
if ((${#left[@]})); then
    echo "demo: WARNING: processes still running after run: ${left[*]} (stopping them)" >&2
    kill -TERM "${left[@]}" 2>/dev/null || true
fi

VENV_BIN="$REPO_ROOT/.venv/bin"
MCP_PATH="$VENV_BIN:/usr/local/bin:/usr/bin:/bin"
echo
echo "==> Register the server with an MCP client (notebook root: $ROOT)"
python - "$BIN" "$ROOT" "$MCP_PATH" "$REPO_ROOT/.venv" <<'EOF'
import json, shlex, sys
binary, root, path, venv = sys.argv[1:5]
args = ["serve", "--root", root]
env = {"PATH": path, "VIRTUAL_ENV": venv}
print("\nClaude Desktop (claude_desktop_config.json):")
print(json.dumps({"mcpServers": {"jupyter": {"command": binary, "args": args, "env": env}}}, indent=2))
print("\nClaude Code:")
print("claude mcp add --transport stdio "
      + " ".join(f"--env {shlex.quote(k + '=' + v)}" for k, v in env.items())
      + f" jupyter -- {shlex.quote(binary)} " + " ".join(shlex.quote(a) for a in args))
print("\nVS Code (.vscode/mcp.json):")
print(json.dumps({"servers": {"jupyter": {"type": "stdio", "command": binary, "args": args, "env": env}}}, indent=2))
EOF
echo
echo "demo: done; scratch folder $scratch (delete it when finished)"
