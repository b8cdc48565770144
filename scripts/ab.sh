#!/usr/bin/env bash
# Side-by-side A/B of rtcd builds with the load generator: each rep runs every binary once,
# interleaved (so drift in the machine hits all of them alike), rtcd with one worker pinned
# to CPU 1, the generator on CPU 0, loopback only. Prints CPU µs per forwarded packet, loss
# and p99 latencies per run.
#
# usage: scripts/ab.sh SHAPE N REPS BIN [BIN ...]
#   e.g. scripts/ab.sh W2 20 3 /tmp/rtcd-old target/release/rtcd
# env:   BWE=false to run without the bandwidth estimator; the generator is
#        target/release/rtcd-loadgen (cargo build --release --bins).
set -euo pipefail
[ $# -ge 4 ] || { sed -n 2,11p "$0"; exit 2; }
shape=$1 n=$2 reps=$3
shift 3
root=$(cd "$(dirname "$0")/.." && pwd)
lg=$root/target/release/rtcd-loadgen
[ -x "$lg" ] || { echo "missing $lg: cargo build --release --bins" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for rep in $(seq 1 "$reps"); do
  for bin in "$@"; do
    api=$((21000 + RANDOM % 5000)) rtc=$((26000 + RANDOM % 5000))
    env -i PATH="$PATH" RTCD_RTC_BANDWIDTHESTIMATION="${BWE:-true}" \
      RTCD_API_HTTP_LISTENADDRESS=127.0.0.1:$api RTCD_API_SECURITY_ALLOWSELFREGISTRATION=true \
      RTCD_STORE_DATASOURCE="$tmp/db$rep" RTCD_LOGGER_ENABLEFILE=false RTCD_LOGGER_CONSOLELEVEL=WARN \
      RTCD_RTC_WORKERS=1 RTCD_RTC_ICEADDRESSUDP=127.0.0.1 RTCD_RTC_ICEPORTUDP=$rtc \
      RTCD_RTC_ICEADDRESSTCP=127.0.0.1 RTCD_RTC_ICEPORTTCP=$rtc \
      taskset -c 1 "$bin" >"$tmp/log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do
      curl -fs "http://127.0.0.1:$api/version" >/dev/null 2>&1 && break
      sleep 0.05
    done
    taskset -c 0 "$lg" --server rtcd --api "127.0.0.1:$api" --shape "$shape" --n "$n" --pid "$pid" \
      --warmup 2 --duration 8 --label ab --out "$tmp/r.json" >"$tmp/lg.txt" 2>&1 || true
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    python3 - "$tmp/r.json" "$bin" "$shape" "$n" <<'PY' || tail -3 "$tmp/lg.txt"
import json, sys
r = json.load(open(sys.argv[1])); s = r["server"]
print(sys.argv[2], f"{sys.argv[3]} n={sys.argv[4]}",
      "us/pkt %.2f" % s["cpu_us_per_forwarded_packet"], "loss %.4f" % r["loss"],
      "p99 audio %.2f ms" % r["latency_audio_ms"]["p99_ms"],
      "p99 video %.2f ms" % r["latency_video_ms"]["p99_ms"], "forwarded", r["forwarded_packets"])
PY
    rm -rf "$tmp/db$rep" "$tmp/r.json"
  done
done
