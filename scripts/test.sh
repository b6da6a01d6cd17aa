#!/usr/bin/env bash
# The whole gate, as CI runs it (.ci/run): setup, then
#   fmt      cargo fmt --all -- --check
#   clippy   cargo clippy --workspace --all-targets -- -D warnings
#   cargo    cargo test --workspace --release   (real-kernel tests find python via PATH)
#   e2e      python -m pytest tests/e2e -n 2    (official MCP SDK against the release binary)
# Every step runs even when an earlier one failed (setup excepted), so one run
# reports everything; the exit status is non-zero if any step failed.
# Extra arguments go to pytest, e.g. `scripts/test.sh -k corpus -x`.
# Set TEST_STEPS to a subset (e.g. TEST_STEPS="cargo e2e") to run fewer steps.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

t_start=$SECONDS
bash scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh
export CI="${CI:-}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

steps="${TEST_STEPS:-fmt clippy cargo e2e}"
locked=()
if [[ -f Cargo.lock ]]; then locked=(--locked); fi
summary=()
failed=0

run_step() {
    local name=$1
    shift
    case " $steps " in *" $name "*) ;; *) summary+=("$name: skipped"); return 0 ;; esac
    printf '\n==> %s: %s\n' "$name" "$*"
    local t0=$SECONDS rc=0
    "$@" </dev/null || rc=$?
    local dt=$((SECONDS - t0))
    if [[ $rc -eq 0 ]]; then
        summary+=("$name: ok (${dt}s)")
    else
        summary+=("$name: FAILED rc=$rc (${dt}s)")
        failed=1
    fi
}

run_step fmt cargo fmt --all -- --check
run_step clippy cargo clippy --workspace --all-targets "${locked[@]}" -- -D warnings
run_step cargo cargo test --workspace --release "${locked[@]}"
# Two workers (pytest-xdist, work stealing): most e2e time is spent waiting on kernels and
# subprocesses, so two tests at a time on two cores nearly halve the wall time.
# E2E_WORKERS=0 runs them serially in this process.
workers="${E2E_WORKERS:-2}"
xdist=()
if [[ "$workers" != "0" ]]; then xdist=(-n "$workers" --dist worksteal); fi
run_step e2e python -m pytest tests/e2e -q -p no:cacheprovider --timeout 600 --tb=short -rfE "${xdist[@]}" "$@"

total=$((SECONDS - t_start))
printf '\n'
for line in "${summary[@]}"; do printf '  %s\n' "$line"; done
if [[ $failed -eq 0 ]]; then
    printf 'test.sh: PASS (%dm%02ds)\n' $((total / 60)) $((total % 60))
else
    printf 'test.sh: FAIL (%dm%02ds)\n' $((total / 60)) $((total % 60))
fi
exit "$failed"
