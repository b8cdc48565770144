#!/usr/bin/env bash
# Runs the whole test suite and prints one summary line: "tests: N passed, N failed, N skipped".
#   1. Rust: unit and integration tests (cargo nextest, or cargo test), incl. str0m clients
#   2. aiortc: protocol-level tests with a third-party WebRTC stack (scripts/aiortc.sh)
#   3. Chromium running Mattermost's RTCPeer in a loopback-only netns (scripts/e2e.sh)
#   4. ops: install.sh into a temp DESTDIR, systemd unit, tuning scripts on fake /proc and
#      /sys trees, Kubernetes manifests, shellcheck (tests/ops/run.sh; never touches the host)
#   5. bench: a smoke run of every load shape against the daemon and the raw relay
#      (scripts/bench.sh --smoke; asserts media flowed and reports were written, never timings)
# Usage: scripts/test.sh   (installs missing test dependencies first when run as root;
#        RTCD_SKIP_DEPS=1 skips that; RTCD_TEST_SUITES="rust aiortc e2e ops bench" picks suites)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

suites=${RTCD_TEST_SUITES:-"rust aiortc e2e ops bench"}
want() { case " $suites " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if [ "${RTCD_SKIP_DEPS:-0}" != 1 ]; then
  args=()
  want aiortc && args+=(--aiortc)
  want e2e && args+=(--e2e)
  want ops && args+=(--ops)
  scripts/deps.sh "${args[@]}" || exit 1
fi

passed=0 failed=0 skipped=0 status=0
add() { passed=$((passed + ${1:-0})); failed=$((failed + ${2:-0})); skipped=$((skipped + ${3:-0})); }
num() { sed -nE "s/.*[^0-9]([0-9]+) $1.*/\1/p" <<<"$2" | tail -n 1; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT

if want rust; then
  echo "== rust"
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast --failure-output final 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    summary=$(grep -E '^\s*Summary \[' "$log" | tail -n 1)
    p=$(num passed "$summary"); f=$(num failed "$summary"); s=$(num skipped "$summary")
    # Doc tests are not run by nextest.
    cargo test --workspace --doc >>"$log" 2>&1 || rc=1
    add "${p:-0}" "${f:-0}" "${s:-0}"
    # Every data-plane test again on the portable I/O backend (the first pass ran on
    # io_uring where this kernel allows it).
    echo "== rust (data plane, portable I/O backend)"
    RTCD_TEST_IO_BACKEND=portable cargo nextest run --test it --no-fail-fast --failure-output final \
      -E 'test(/^(media|fanout)::/)' 2>&1 | tee "$log"
    rc2=${PIPESTATUS[0]}
    summary=$(grep -E '^\s*Summary \[' "$log" | tail -n 1)
    p=$(num passed "$summary"); f=$(num failed "$summary"); s=0
    [ "$rc2" -ne 0 ] && [ "${f:-0}" = 0 ] && f=1
    [ "$rc2" -ne 0 ] && rc=1
    add "${p:-0}" "${f:-0}" 0
    # The fan-out ring under loom's exhaustive interleavings.
    echo "== rust (loom model of the fan-out ring)"
    RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p rtcd-ring --release --lib 2>&1 | tee "$log"
    rc3=${PIPESTATUS[0]}
    p=$(sed -nE 's/^test result: .* ([0-9]+) passed.*/\1/p' "$log" | tail -n 1)
    f=$(sed -nE 's/^test result: .* ([0-9]+) failed.*/\1/p' "$log" | tail -n 1)
    [ "$rc3" -ne 0 ] && [ "${f:-0}" = 0 ] && f=1
    [ "$rc3" -ne 0 ] && rc=1
    p=${p:-0}; f=${f:-0}; s=0
  else
    cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    p=$(grep -E '^test result:' "$log" | sed -nE 's/.* ([0-9]+) passed.*/\1/p' | awk '{s+=$1} END {print s+0}')
    f=$(grep -E '^test result:' "$log" | sed -nE 's/.* ([0-9]+) failed.*/\1/p' | awk '{s+=$1} END {print s+0}')
    s=0
  fi
  [ "$rc" -ne 0 ] && [ "${f:-0}" = 0 ] && f=1
  [ "$rc" -ne 0 ] && status=1
  add "${p:-0}" "${f:-0}" "${s:-0}"
fi

if want aiortc; then
  # Two workers, every call spread over both (spill after one session), once per UDP
  # backend (auto = io_uring where the kernel allows it).
  for backend in portable auto; do
    echo "== aiortc (2 workers, $backend I/O)"
    RTCD_RTC_WORKERS=2 RTCD_RTC_WORKERSPILLSESSIONS=1 RTCD_RTC_IOBACKEND=$backend \
      scripts/aiortc.sh -q 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    line=$(grep -E '[0-9]+ (passed|failed|error)' "$log" | tail -n 1)
    p=$(num passed "$line"); f=$(num failed "$line"); e=$(num error "$line"); s=$(num skipped "$line")
    f=$(( ${f:-0} + ${e:-0} ))
    [ "$rc" -ne 0 ] && [ "$f" = 0 ] && f=1
    [ "$rc" -ne 0 ] && status=1
    add "${p:-0}" "$f" "${s:-0}"
  done
fi

if want e2e && [ -x scripts/e2e.sh ]; then
  echo "== e2e (chromium)"
  # Two workers, every call spread over both (spill after one session), io_uring where
  # available (auto).
  RTCD_RTC_WORKERS=2 RTCD_RTC_WORKERSPILLSESSIONS=1 \
    E2E_PROFILE=${E2E_PROFILE:-debug} scripts/e2e.sh 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  p=$(sed -nE 's/^# pass ([0-9]+)/\1/p' "$log" | tail -n 1)
  f=$(sed -nE 's/^# fail ([0-9]+)/\1/p' "$log" | tail -n 1)
  s=$(sed -nE 's/^# skipped ([0-9]+)/\1/p' "$log" | tail -n 1)
  [ "$rc" -ne 0 ] && [ "${f:-0}" = 0 ] && f=1
  [ "$rc" -ne 0 ] && status=1
  add "${p:-0}" "${f:-0}" "${s:-0}"
fi

if want ops; then
  echo "== ops"
  tests/ops/run.sh 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  line=$(grep -E '^ops: [0-9]+ passed' "$log" | tail -n 1)
  p=$(num passed "$line"); f=$(num failed "$line"); s=$(num skipped "$line")
  [ "$rc" -ne 0 ] && [ "${f:-0}" = 0 ] && f=1
  [ "$rc" -ne 0 ] && status=1
  add "${p:-0}" "${f:-0}" "${s:-0}"
fi

if want bench; then
  echo "== bench (smoke)"
  scripts/bench.sh --smoke --out "$(mktemp -d)" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  line=$(grep -E '^bench: [0-9]+ passed' "$log" | tail -n 1)
  p=$(num passed "$line"); f=$(num failed "$line")
  [ "$rc" -ne 0 ] && [ "${f:-0}" = 0 ] && f=1
  [ "$rc" -ne 0 ] && status=1
  add "${p:-0}" "${f:-0}" 0
fi

echo
echo "tests: ${passed} passed, ${failed} failed, ${skipped} skipped"
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ]
