#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine of this kind (idempotent).
# Everything comes from the package registries by name; nothing is downloaded otherwise.
# Usage: scripts/deps.sh [--aiortc] [--e2e] [--ops] [--bench]   (any order; --aiortc:
#        python3 + venv, nftables, iproute2 for scripts/aiortc.sh; --e2e: also chromium,
#        nftables, iproute2, nodejs/npm and `npm ci` in e2e/ for scripts/e2e.sh; --ops:
#        systemd-analyze, the shell linter and python3-yaml for tests/ops/run.sh; --bench:
#        Janus, iproute2 and python3-matplotlib for scripts/bench.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

# --- aiortc block (scripts/aiortc.sh): --aiortc (anywhere in the arguments) installs
# python3 + venv, nftables and iproute2 (the venv itself is made by scripts/aiortc.sh).
aiortc=0
for arg in "$@"; do
  if [ "$arg" = --aiortc ]; then aiortc=1; fi
done
if [ "$aiortc" = 1 ]; then
  aiortc_apt=()
  command -v python3 >/dev/null 2>&1 || aiortc_apt+=(python3)
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || aiortc_apt+=(python3-venv)
  command -v nft >/dev/null 2>&1 || aiortc_apt+=(nftables)
  command -v ip >/dev/null 2>&1 || aiortc_apt+=(iproute2)
  if [ ${#aiortc_apt[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || { echo "deps: need root to install: ${aiortc_apt[*]}" >&2; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${aiortc_apt[@]}"
  fi
fi
# --- end of aiortc block ---

e2e=0 ops=0 bench=0
for arg in "$@"; do
  case "$arg" in
    --aiortc) ;; # handled above
    --e2e) e2e=1 ;;
    --ops) ops=1 ;;
    --bench) bench=1 ;;
    *) echo "deps: unknown argument $arg" >&2; exit 2 ;;
  esac
done

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
# scripts/bench.sh (and its --smoke suite): curl, ss, taskset.
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v ss >/dev/null 2>&1 || need_apt+=(iproute2)
command -v taskset >/dev/null 2>&1 || need_apt+=(util-linux)
if [ "$bench" = 1 ]; then
  # The side-by-side peer (Janus VideoRoom) and the plot; only scripts/bench.sh needs them.
  command -v janus >/dev/null 2>&1 || need_apt+=(janus)
  command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
  /usr/bin/python3 -c 'import matplotlib' >/dev/null 2>&1 || need_apt+=(python3-matplotlib)
fi
if [ "$e2e" = 1 ]; then
  [ -x /usr/bin/chromium ] || need_apt+=(chromium)
  command -v nft >/dev/null 2>&1 || need_apt+=(nftables)
  command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
  command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
  command -v npm >/dev/null 2>&1 || need_apt+=(npm)
fi
if [ "$ops" = 1 ]; then
  command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
  command -v shellcheck >/dev/null 2>&1 || need_apt+=(shellcheck)
  /usr/bin/python3 -c 'import yaml' >/dev/null 2>&1 || need_apt+=(python3-yaml)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: need root to install: ${need_apt[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
command -v cargo >/dev/null 2>&1 || { echo "deps: cargo (Rust toolchain) is required" >&2; exit 1; }
if [ "$e2e" = 1 ] && [ ! -d e2e/node_modules ]; then
  (cd e2e && npm ci --no-audit --no-fund)
fi
echo "deps: ok"
