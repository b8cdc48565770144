#!/usr/bin/env bash
# Protocol-level end-to-end tests of rtcd with aiortc (a third-party Python WebRTC client):
# signaling/candidate timing, the calls-dc protocol, renegotiation from both sides,
# dcSignaling, and audio under 10 % loss (nftables in a network namespace; needs root + nft).
#
# Usage: scripts/aiortc.sh [pytest args ...]     e.g. scripts/aiortc.sh -k loss -x
# Env:   RTCD_BIN=path   use this daemon binary (default: target/debug/rtcd, built if missing)
#        AIORTC_KEEP_LOGS=1  keep e2e/aiortc/logs/<test>.log of passing tests too
#        PYTHON=python3  interpreter used to create the venv
# Setup: scripts/deps.sh --aiortc (python3-venv, nftables, iproute2).
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
dir=$repo/e2e/aiortc
venv=$dir/.venv

die() { echo "aiortc: $*" >&2; exit 2; }

# 1. The venv (recreated when requirements.txt changed).
stamp=$venv/.requirements.sha
want=$(sha256sum "$dir/requirements.txt" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv" || die "python3 -m venv failed (apt-get install python3-venv?)"
  "$venv/bin/pip" install -q -r "$dir/requirements.txt" || die "pip install failed"
  echo "$want" > "$stamp"
fi

# 2. The daemon.
if [ -z "${RTCD_BIN:-}" ]; then
  # Always (re)build: a stale binary would test old code; a no-op build takes a second.
  cargo build --bin rtcd || die "cargo build failed"

  export RTCD_BIN=$repo/target/debug/rtcd
fi
[ -x "$RTCD_BIN" ] || die "no daemon binary at $RTCD_BIN"

# 3. pytest. Exit code 5 (no tests collected) counts as a failure.
cd "$dir"
"$venv/bin/python" -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "aiortc: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
