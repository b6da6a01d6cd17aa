#!/usr/bin/env bash
# Set up, then run the execution-latency benchmark (bench/bench_exec.py):
# MCP stdio vs raw jupyter_client round trips, and spawn-to-initialize time.
# Arguments go to bench_exec.py, e.g. `scripts/bench.sh --n 500` or `--skip-mcp`.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
bash scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh
exec python bench/bench_exec.py "$@"
