#!/usr/bin/env bash
# Runs the whole test suite and prints one summary line: "tests: N passed, N failed".
# Usage: scripts/test.sh   (installs missing test dependencies first when run as root)
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${RTCD_SKIP_DEPS:-0}" != 1 ]; then
  scripts/deps.sh || exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast --failure-output final 2>&1 | tee "$log" || status=$?
  summary=$(grep -E '^\s*Summary \[' "$log" | tail -n 1)
  passed=$(sed -nE 's/.* ([0-9]+) passed.*/\1/p' <<<"$summary")
  failed=$(sed -nE 's/.* ([0-9]+) failed.*/\1/p' <<<"$summary")
  skipped=$(sed -nE 's/.* ([0-9]+) skipped.*/\1/p' <<<"$summary")
  # Doc tests are not run by nextest.
  cargo test --workspace --doc 2>&1 | tee -a "$log" >/dev/null || status=1
else
  cargo test --workspace --no-fail-fast 2>&1 | tee "$log" || status=$?
  passed=$(grep -E '^test result:' "$log" | sed -nE 's/.* ([0-9]+) passed.*/\1/p' | awk '{s+=$1} END {print s+0}')
  failed=$(grep -E '^test result:' "$log" | sed -nE 's/.* ([0-9]+) failed.*/\1/p' | awk '{s+=$1} END {print s+0}')
  skipped=0
fi
passed=${passed:-0}
failed=${failed:-0}
skipped=${skipped:-0}
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1 # the runner failed before reporting (e.g. a build error)
fi
echo
echo "tests: ${passed} passed, ${failed} failed, ${skipped} skipped"
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ]
