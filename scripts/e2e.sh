#!/usr/bin/env bash
# End-to-end tests with real clients: headless Chromium running Mattermost's RTCPeer
# (@mattermost/calls-common) against rtcd, through a plugin-like relay, all inside a fresh
# loopback-only network namespace (nothing leaves 127.0.0.1). See e2e/README.md.
#
# Usage: scripts/e2e.sh [test file ...]        (default: every e2e/tests/*.test.mjs)
# Env:   RTCD_BIN=path     use this daemon binary instead of building one
#        E2E_PROFILE=debug build/use target/debug/rtcd (default: release, the shipped build;
#                          debug compiles faster and also passes)
#        E2E_DUMP=1        write diagnostics for passing tests too (e2e/logs/)
# Needs root (ip netns, nft) and `scripts/deps.sh --e2e` (chromium, nftables, npm packages).
# Output: node's spec reporter, then TAP totals ("# pass N", "# fail N", ...; the full TAP
# stream is in e2e/logs/results.tap). Exit status: node's test runner's (non-zero when any
# test fails), 2 on setup errors, 124 on the 25-minute overall timeout, 130 when interrupted.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

die() { echo "e2e: $*" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
for c in ip nft node npm timeout; do
  command -v "$c" >/dev/null 2>&1 || die "'$c' missing; run scripts/deps.sh --e2e"
done
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || die "chromium missing; run scripts/deps.sh --e2e"

# 1. The daemon (cargo only rebuilds what changed).
if [ -z "${RTCD_BIN:-}" ]; then
  if [ "${E2E_PROFILE:-release}" = debug ]; then
    cargo build --bin rtcd || die "cargo build failed"
    RTCD_BIN=$repo/target/debug/rtcd
  else
    cargo build --release --bin rtcd || die "cargo build failed"
    RTCD_BIN=$repo/target/release/rtcd
  fi
fi
[ -x "$RTCD_BIN" ] || die "no daemon binary at $RTCD_BIN"
RTCD_BIN=$(realpath "$RTCD_BIN")

# 2. npm packages (registry only, pinned by package-lock.json) and the page bundle.
if [ ! -d e2e/node_modules ]; then
  (cd e2e && npm ci --no-audit --no-fund) || die "npm ci failed"
fi
(cd e2e && node lib/build.mjs >/dev/null) || die "bundling the test page failed"

# 3. The tests (node's built-in runner, one file at a time: files share the namespace and
#    some install nftables rules), inside a fresh loopback-only namespace; each file starts
#    its own rtcd (by PID, stopped in its teardown; netns.sh kills leftovers by PID).
if [ $# -gt 0 ]; then
  tests=("$@")
else
  tests=(e2e/tests/*.test.mjs)
fi
mkdir -p e2e/logs
echo "e2e: daemon $RTCD_BIN"
tap=e2e/logs/results.tap
rm -f "$tap"
e2e/lib/netns.sh --timeout 1500 env RTCD_BIN="$RTCD_BIN" \
  node --test --test-concurrency=1 --test-timeout=240000 \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$tap" "${tests[@]}" &
runner=$!
trap 'kill -TERM $runner 2>/dev/null; wait $runner; echo "e2e: interrupted" >&2; exit 130' INT TERM
wait $runner
status=$?
# Machine-readable totals (scripts/test.sh reads "# pass N" / "# fail N" / "# skipped N").
[ -f "$tap" ] && grep -E '^# (tests|pass|fail|cancelled|skipped|todo|duration_ms) ' "$tap"
if [ $status -eq 0 ]; then
  echo "e2e: passed"
else
  echo "e2e: FAILED (exit $status); logs in e2e/logs/ (<test>.log = rtcd, <test>.diag.txt = relay/pages)"
fi
exit $status
