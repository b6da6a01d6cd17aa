#!/usr/bin/env bash
# Soak the durability guarantees: N chaos rounds (default 20). Each round queues cells from
# three notebooks, kill -9s the server at a random moment, restarts it, and checks that every
# accepted execution completed exactly once or was interrupted, that kernel state and the
# cells' side-effect files match, that state.db passes integrity_check and that notebooks
# validate. Issue 8 adds round kinds cycled by seed: run_all_cells batches killed with the
# server (and their kernels), shutdown/restart racing a batch, and a data dir on a tmpfs that
# fills up (root only). CHAOS_SEED=N makes a run repeatable; CHAOS_KINDS=batch,store picks kinds.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
bash scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh
exec python tests/e2e/chaos.py "${1:-20}"
