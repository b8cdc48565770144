#!/usr/bin/env bash
# Runs a command inside a fresh, uniquely named, loopback-only network namespace and always
# removes it afterwards (DESIGN.md network rules: nothing leaves 127.0.0.1; Chromium only runs
# in such a namespace).
#
# Usage: e2e/lib/netns.sh [--timeout SECONDS] COMMAND [ARG...]
#   The command sees E2E_NETNS=<name>. Everything started inside the namespace (rtcd, node,
#   chromium: only this run's processes, the namespace is new) is stopped by PID on exit,
#   TERM first, KILL after 3 s. Exit status is the command's (124 on timeout).
# Needs root (ip netns).
set -uo pipefail

limit=1800
if [ "${1:-}" = --timeout ]; then
  limit=$2
  shift 2
fi
[ $# -gt 0 ] || { echo "usage: $0 [--timeout S] COMMAND [ARG...]" >&2; exit 2; }

ns="rtcd-e2e-$$-$RANDOM"
cleanup() {
  local pids
  pids=$(ip netns pids "$ns" 2>/dev/null || true)
  if [ -n "$pids" ]; then
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    for _ in $(seq 1 10); do
      pids=$(ip netns pids "$ns" 2>/dev/null || true)
      [ -z "$pids" ] && break
      sleep 0.3
    done
    # shellcheck disable=SC2086
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
  fi
  ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$ns" || { echo "netns: ip netns add $ns failed" >&2; exit 2; }
ip -n "$ns" link set lo up || { echo "netns: could not bring lo up in $ns" >&2; exit 2; }
echo "netns: $ns (loopback only)" >&2
# In the background + wait, so a TERM/INT to this script is handled at once (bash defers traps
# while a foreground child runs): the command gets TERM, then cleanup stops the rest by PID.
timeout --kill-after=10 "$limit" ip netns exec "$ns" env E2E_NETNS="$ns" "$@" &
cmd=$!
trap 'kill -TERM $cmd 2>/dev/null; wait $cmd; exit 130' INT TERM
wait $cmd
