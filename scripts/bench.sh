#!/usr/bin/env bash
# Side-by-side benchmark: builds release, then for every workload shape sweeps N against each
# server (our rtcd, the raw relay baseline, Janus when installed), interleaved (A, B, C, A…),
# each server pinned to CPU 1 and the generator to CPU 0, until loss > 0.1 % or p99 > 20 ms
# (or the generator saturates). Prints a table and writes raw JSON, a markdown table and a PNG
# plot.
# Usage: scripts/bench.sh [--quick|--smoke] [--out DIR] [--shapes "w1 w2 w3 w4 w6"] [--reps N]
#                         [--servers "rtcd raw janus"] [--cpu-cap PCT]
#   --cpu-cap PCT (or BENCH_CPU_CAP=PCT): each server runs in a cgroup capped at PCT % of one
#            core (v2: cpu.max "PCT*1000 100000"; where the cpu controller is still on cgroup v1,
#            as on this VM, cpu.cfs_quota_us/cfs_period_us), so that it, not the generator,
#            saturates first. Needs root; without root or a cpu controller it says so and runs
#            uncapped. The cap is recorded in every report (server.cpu_cap_pct) and the table.
#   --quick: tiny sweep, short windows (~1.5 minutes of runs, plus the release build: ~2 min
#            after a commit, since build.rs stamps the git hash into rtcd).
#   BENCH_SKIP_BUILD=1: no cargo build; run the binaries already in target/.
#   Full mode: BENCH_SWEEP_W1="50 200 …" (… _W2, _W3, _W4, _W6) and BENCH_DURATION=S override
#   the sweep and the window.
#   --smoke: the test suite's check (debug build, tiny N, ~1 s windows): asserts media flowed
#            and a report was written for every shape and server, never timings; prints
#            "bench: N passed, N failed".
# Traffic stays on 127.0.0.1 (and the 198.18.0.0/30 veth pair of Janus's namespace); every
# process started here is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0 smoke=0 out="" shapes="" reps="" only_servers="" cpu_cap=${BENCH_CPU_CAP:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --smoke) smoke=1 ;;
    --out) out=$2; shift ;;
    --shapes) shapes=$2; shift ;;
    --reps) reps=$2; shift ;;
    --servers) only_servers=$2; shift ;;
    --cpu-cap) cpu_cap=$2; shift ;;
    *) echo "bench: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

profile=release
if [ "$smoke" = 1 ]; then
  : "${shapes:=w1 w2 w3 w4 w6}" "${reps:=1}"
  warmup=0.5 duration=1.5 profile=debug
  declare -A sweep=([w1]="3" [w2]="2" [w3]="2" [w4]="2" [w6]="2")
elif [ "$quick" = 1 ]; then
  : "${shapes:=w1 w2 w3 w4 w6}" "${reps:=1}"
  warmup=0.5 duration=2
  # Two points for W1, one for the rest, no early stop: ~15 runs of ~10 s.
  declare -A sweep=([w1]="50 200" [w2]="20" [w3]="25" [w4]="50" [w6]="10")
else
  : "${shapes:=w1 w2 w3 w4 w6}" "${reps:=3}"
  warmup=3 duration=10
  declare -A sweep=([w1]="50 100 200 400 700 1000" [w2]="10 20 50 100 200" [w3]="10 25 50 100 200"
    [w4]="25 50 100 200 400" [w6]="25")
  [ -n "${BENCH_SWEEP_W1:-}" ] && sweep[w1]=$BENCH_SWEEP_W1
  [ -n "${BENCH_SWEEP_W2:-}" ] && sweep[w2]=$BENCH_SWEEP_W2
  [ -n "${BENCH_SWEEP_W3:-}" ] && sweep[w3]=$BENCH_SWEEP_W3
  [ -n "${BENCH_SWEEP_W4:-}" ] && sweep[w4]=$BENCH_SWEEP_W4
  [ -n "${BENCH_SWEEP_W6:-}" ] && sweep[w6]=$BENCH_SWEEP_W6
  [ -n "${BENCH_DURATION:-}" ] && duration=$BENCH_DURATION
fi
if [ "$smoke" = 0 ] && [ "${BENCH_SKIP_DEPS:-0}" != 1 ] && [ "$(id -u)" = 0 ]; then
  scripts/deps.sh --bench >/dev/null || echo "bench: deps.sh --bench failed; going on with what is installed"
fi
out=${out:-target/bench/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
servers=(rtcd raw)
janus_ok=0
if command -v janus >/dev/null 2>&1 && [ -d /etc/janus ] && command -v ip >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  janus_ok=1
  servers+=(janus)
else
  echo "bench: Janus not available (needs root, iproute2 and Debian's janus: scripts/deps.sh --bench); skipped"
fi
if [ -n "$only_servers" ]; then
  keep=()
  for k in "${servers[@]}"; do
    case " $only_servers " in *" $k "*) keep+=("$k") ;; esac
  done
  servers=("${keep[@]}")
  [ ${#servers[@]} -gt 0 ] || { echo "bench: --servers \"$only_servers\": none of them available" >&2; exit 2; }
fi

# CPU cap (perf-anchors §5.1.4): one cgroup for the run, each server moved into it as it starts.
cg_dir="" cg_mode=""
if [ -n "$cpu_cap" ]; then
  case "$cpu_cap" in
    '' | *[!0-9]*) echo "bench: --cpu-cap wants an integer percentage of one core (1..100)" >&2; exit 2 ;;
  esac
  if [ "$cpu_cap" -lt 1 ] || [ "$cpu_cap" -gt 100 ]; then
    echo "bench: --cpu-cap wants 1..100 (% of one core)" >&2; exit 2
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "bench: --cpu-cap needs root (it writes /sys/fs/cgroup); running uncapped"
    cpu_cap=""
  elif [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers; then
    cg_mode=v2 cg_dir=/sys/fs/cgroup/rtcdbench$$
    grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control || echo +cpu >/sys/fs/cgroup/cgroup.subtree_control
    mkdir "$cg_dir"
    echo "$((cpu_cap * 1000)) 100000" >"$cg_dir/cpu.max"
  elif [ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
    # Hybrid hierarchy: the cpu controller is bound to v1 and cannot be enabled on v2.
    cg_mode=v1 cg_dir=/sys/fs/cgroup/cpu/rtcdbench$$
    mkdir "$cg_dir"
    echo 100000 >"$cg_dir/cpu.cfs_period_us"
    echo "$((cpu_cap * 1000))" >"$cg_dir/cpu.cfs_quota_us"
  else
    echo "bench: --cpu-cap: no cgroup v2 cpu controller (/sys/fs/cgroup/cgroup.controllers) and no v1 cpu controller; running uncapped"
    cpu_cap=""
  fi
  [ -n "$cpu_cap" ] && echo "bench: servers capped at $cpu_cap % of one core (cgroup $cg_mode, $cg_dir)"
fi

echo "== build ($profile)"
if [ "${BENCH_SKIP_BUILD:-0}" = 1 ]; then
  # For reruns: rtcd's build script stamps the date, so every cargo build relinks it.
  for b in rtcd rtcd-loadgen rtcd-rawrelay; do
    [ -x "target/$profile/$b" ] || { echo "bench: BENCH_SKIP_BUILD=1 but target/$profile/$b is missing" >&2; exit 1; }
  done
  echo "BENCH_SKIP_BUILD=1: using the binaries in target/$profile as they are"
elif [ "$profile" = release ]; then
  cargo build --release --workspace --bin rtcd --bin rtcd-loadgen --bin rtcd-rawrelay 2>&1 | tail -n 2
else
  cargo build --workspace --bin rtcd --bin rtcd-loadgen --bin rtcd-rawrelay 2>&1 | tail -n 2
fi
bin=target/$profile

ncpu=$(nproc)
srv_cpu=1 gen_cpu=0
[ "$ncpu" -lt 2 ] && srv_cpu=0

pids=()
tmp=$(mktemp -d)
# Janus runs in its own network namespace (perf-anchors §3.1: it gathers every interface
# otherwise); a veth pair in 198.18.0.0/15 (benchmarking range) joins it to the generator.
jns=rtcdbench$$ jveth_a=lgja$$ jveth_b=lgjb$$
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  if [ "$janus_ok" = 1 ]; then
    ip link del "$jveth_a" 2>/dev/null || true
    ip netns del "$jns" 2>/dev/null || true
  fi
  if [ -n "$cg_dir" ] && [ -d "$cg_dir" ]; then
    # The servers are gone by now; a cgroup with no process in it can be removed.
    for _ in 1 2 3 4 5; do rmdir "$cg_dir" 2>/dev/null && break; sleep 0.2; done
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# A port below the ephemeral range that is free for TCP and UDP now.
pick_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 12000))
    if ! ss -Hlntu "sport = :$p" 2>/dev/null | grep -q .; then echo "$p"; return; fi
  done
  echo "bench: no free port" >&2; exit 1
}

setup_janus() {
  ip netns add "$jns"
  ip link add "$jveth_a" type veth peer name "$jveth_b"
  ip link set "$jveth_b" netns "$jns"
  ip addr add 198.18.0.1/30 dev "$jveth_a"
  ip link set "$jveth_a" up
  ip netns exec "$jns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
  ip netns exec "$jns" ip addr add 198.18.0.2/30 dev "$jveth_b"
  ip netns exec "$jns" ip link set "$jveth_b" up
  ip netns exec "$jns" ip link set lo up
  local c="$tmp/janus"
  cp -r /etc/janus "$c"
  sed -i -e "s|^\s*configs_folder = .*|\tconfigs_folder = \"$c\"|" \
    -e 's|^\s*debug_level = .*|\tdebug_level = 2|' \
    -e 's|^\s*#event_loops = .*|\tevent_loops = 1|' \
    -e 's|^\s*#rtp_port_range = .*|\trtp_port_range = "20000-20999"|' \
    -e "s|^\s*#ice_enforce_list = \"eth0\"\$|\tice_enforce_list = \"$jveth_b\"|" \
    -e 's|^\s*#disable = "libjanus_voicemail.so,libjanus_recordplay.so"|\tdisable = "libjanus_voicemail.so,libjanus_recordplay.so,libjanus_streaming.so,libjanus_sip.so,libjanus_nosip.so,libjanus_lua.so,libjanus_duktape.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_audiobridge.so,libjanus_echotest.so"|' \
    -e 's|^\s*#disable = "libjanus_rabbitmq.so"|\tdisable = "libjanus_rabbitmq.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_pfunix.so,libjanus_websockets.so"|' \
    "$c/janus.jcfg"
  sed -i -e 's|^\s*#ip = "192.168.0.1".*|\tip = "198.18.0.2"|' "$c/janus.transport.http.jcfg"
}

# start_server KIND -> sets SRV_PID and SRV_ARGS (loadgen arguments)
start_server() {
  local kind=$1 api rtc
  case "$kind" in
    rtcd)
      api=$(pick_port); rtc=$(pick_port)
      rm -rf "$tmp/db"
      env -i PATH="$PATH" RTCD_API_HTTP_LISTENADDRESS=127.0.0.1:$api \
        RTCD_API_SECURITY_ALLOWSELFREGISTRATION=true RTCD_STORE_DATASOURCE="$tmp/db" \
        RTCD_LOGGER_ENABLEFILE=false RTCD_LOGGER_CONSOLELEVEL=WARN \
        RTCD_RTC_ICEADDRESSUDP=127.0.0.1 RTCD_RTC_ICEPORTUDP=$rtc \
        RTCD_RTC_ICEADDRESSTCP=127.0.0.1 RTCD_RTC_ICEPORTTCP=$rtc \
        taskset -c "$srv_cpu" "$bin/rtcd" >"$tmp/rtcd.log" 2>&1 &
      SRV_PID=$!
      SRV_ARGS="--server rtcd --api 127.0.0.1:$api"
      for _ in $(seq 1 100); do
        curl -fs "http://127.0.0.1:$api/version" >/dev/null 2>&1 && break
        kill -0 "$SRV_PID" 2>/dev/null || { echo "rtcd exited:"; tail -5 "$tmp/rtcd.log"; return 1; }
        sleep 0.05
      done
      ;;
    janus)
      [ -d "$tmp/janus" ] || setup_janus
      ip netns exec "$jns" taskset -c "$srv_cpu" janus -F "$tmp/janus" -C "$tmp/janus/janus.jcfg" \
        >"$tmp/janus.log" 2>&1 &
      SRV_PID=$!
      SRV_ARGS="--server janus --janus 198.18.0.2:8088 --local-ip 198.18.0.1"
      for _ in $(seq 1 100); do
        curl -fs "http://198.18.0.2:8088/janus/info" >/dev/null 2>&1 && break
        kill -0 "$SRV_PID" 2>/dev/null || { echo "janus exited:"; tail -5 "$tmp/janus.log"; return 1; }
        sleep 0.1
      done
      ;;
    raw)
      api=$(pick_port)
      taskset -c "$srv_cpu" "$bin/rtcd-rawrelay" "127.0.0.1:$api" >"$tmp/raw.log" 2>&1 &
      SRV_PID=$!
      SRV_ARGS="--server raw --relay 127.0.0.1:$api"
      sleep 0.2
      ;;
  esac
  pids+=("$SRV_PID")
  # The PID is the server itself (`ip netns exec` and `taskset` exec it), so for Janus too
  # the process in its namespace moves, with every thread it has or will start.
  if [ -n "$cg_dir" ]; then
    echo "$SRV_PID" >"$cg_dir/cgroup.procs" || { echo "bench: could not move $kind into $cg_dir" >&2; return 1; }
    SRV_ARGS="$SRV_ARGS --cpu-cap $cpu_cap"
  fi
}

stop_server() {
  kill "$SRV_PID" 2>/dev/null || true
  wait "$SRV_PID" 2>/dev/null || true
}

# The smoke keeps Janus to W1 and W3 so that the test suite stays short; otherwise every
# server runs every shape.
skip_cell() {
  [ "$smoke" = 1 ] && [ "$1" = janus ] && [ "$2" != w1 ] && [ "$2" != w3 ] && return 0
  return 1
}

declare -A stopped
for shape in $shapes; do
  for n in ${sweep[$shape]}; do
    for rep in $(seq 1 "$reps"); do
      for kind in "${servers[@]}"; do
        [ -n "${stopped[$shape/$kind]:-}" ] && continue
        skip_cell "$kind" "$shape" && continue
        start_server "$kind" || { stopped[$shape/$kind]=1; continue; }
        f="$out/$shape-$kind-n$n-r$rep.json"
        extra=()
        [ "$shape" = w6 ] && extra+=(--churn-rate 5)
        [ "$smoke" = 1 ] && extra+=(--video-kbps 300)
        # shellcheck disable=SC2086
        if taskset -c "$gen_cpu" "$bin/rtcd-loadgen" $SRV_ARGS --shape "$shape" --n "$n" \
          --pid "$SRV_PID" --warmup "$warmup" --duration "$duration" --label "$kind" \
          --out "$f" "${extra[@]}" >"$tmp/lg.txt" 2>&1; then
          sed -n '1,3p;5,6p' "$tmp/lg.txt" | sed 's/^/  /' | head -n 4
        else
          echo "  $shape $kind n=$n: generator failed:"; tail -3 "$tmp/lg.txt"
        fi
        stop_server
        # Sweep ends for this server at the first cell over the limits (last rep decides).
        if [ "$smoke" = 0 ] && [ "$quick" = 0 ] && [ -f "$f" ] && [ "$rep" = "$reps" ] && \
          ! python3 -c "import json,sys; r=json.load(open(sys.argv[1])); sys.exit(0 if r['within_slo'] and not r['generator']['saturated'] else 1)" "$f"; then
          echo "  -> $kind past the limits (or generator saturated) at $shape n=$n; sweep stops"
          stopped[$shape/$kind]=1
        fi
      done
    done
  done
done

if [ "$smoke" = 1 ]; then
  # Media flowed and a report exists for every cell: never timings.
  pass=0 fail=0
  for shape in $shapes; do
    for kind in "${servers[@]}"; do
      skip_cell "$kind" "$shape" && continue
      for n in ${sweep[$shape]}; do
        f="$out/$shape-$kind-n$n-r1.json"
        if [ -f "$f" ] && python3 - "$f" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ok = r["connected"] == r["sessions"] and r["forwarded_packets"] > 0 and r["received_frames"] > 0
if r["shape"] == "w2":
    ok = ok and r["latency_video_ms"]["count"] > 0
if r["shape"] == "w6":
    ok = ok and r["churn"]["joins"] > 0 and r["churn"]["with_media"] > 0
else:
    ok = ok and r["expected_frames"] > 0
sys.exit(0 if ok else 1)
PY
        then
          echo "ok   bench smoke $shape $kind n=$n"; pass=$((pass + 1))
        else
          echo "FAIL bench smoke $shape $kind n=$n ($f)"; fail=$((fail + 1))
          [ -f "$f" ] && python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print({k: r[k] for k in ('sessions','connected','forwarded_packets','received_frames','errors')})" "$f"
        fi
      done
    done
  done
  echo "bench: $pass passed, $fail failed"
  [ "$fail" = 0 ]
  exit
fi

echo
py=python3
/usr/bin/python3 -c 'import matplotlib' 2>/dev/null && py=/usr/bin/python3
"$py" scripts/bench_report.py "$out"
echo "raw JSON, table and plot: $out"
