#!/usr/bin/env bash
# Set up, then run a benchmark; every one prints figures and asserts nothing.
#   scripts/bench.sh [exec] [ARGS]   bench/bench_exec.py: MCP stdio vs raw jupyter_client
#                                    round trips, spawn-to-initialize (e.g. `--n 500`)
#   scripts/bench.sh durability      bench/bench_durability.py: restart-to-ready, idle CPU,
#                                    run_all_cells throughput vs a raw jupyter_client loop
#   scripts/bench.sh outputs         bench/bench_outputs.py: bytes returned to the agent per call
#   scripts/bench.sh pool            bench/bench_pool.py: first execution in a new notebook
#                                    with and without --kernel-pool 1
#   scripts/bench.sh checkpoint      bench/bench_checkpoint.py: save/load times, HMAC, server RSS
#                                    (e.g. `--sizes-mb 64,1024`)
#   scripts/bench.sh storage         bench/bench_storage.py: frozen FUSE mount: freeze to first
#                                    fast failure, thaw to first success, healthy-notebook latency
#   scripts/bench.sh daemon          bench/bench_daemon.py: the daemon figures of issue 10 (20
#                                    HTTP sessions vs 20 raw clients, a flooding neighbour,
#                                    /events fan-out with stalled clients, RSS, warm pool)
#   scripts/bench.sh gateway         bench/bench_gateway.py: 1+1 through jupyter-mcp on a Kernel
#                                    Gateway vs a raw WebSocket client; reconnect after a drop
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
bash scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh
which="exec"
if [[ $# -gt 0 && "$1" != -* ]]; then
    which="$1"
    shift
fi
exec python "bench/bench_${which}.py" "$@"
