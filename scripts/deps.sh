#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine of this kind (idempotent).
# Everything comes from the package registries by name; nothing is downloaded otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: need root to install: ${need_apt[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
command -v cargo >/dev/null 2>&1 || { echo "deps: cargo (Rust toolchain) is required" >&2; exit 1; }
echo "deps: ok"
