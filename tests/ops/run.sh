#!/usr/bin/env bash
# Operations tests: scripts/install.sh into a temporary DESTDIR (never the host), the systemd
# unit, tuning/tune.sh and tuning/irq-affinity.sh against fake /proc and /sys trees, the
# Kubernetes manifests, and shellcheck. Nothing here changes the host.
#
# Prints "ok - NAME", "not ok - NAME" or "skip - NAME: why" per case and a closing line
# "ops: N passed, N failed, N skipped". Exit status 1 when a case failed.
set -euo pipefail
cd "$(dirname "$0")/../.."

passed=0 failed=0 skipped=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Runs one case in a subshell; its output is shown only when it fails.
case_() {
  local name=$1
  shift
  local out="$work/$name.out" rc
  # Not in a condition context, so `set -e` stays in force inside the case.
  set +e
  (
    set -e
    "$@"
  ) >"$out" 2>&1
  rc=$?
  set -e
  if [ "$rc" -eq 0 ]; then
    echo "ok - $name"
    passed=$((passed + 1))
  else
    if [ "$rc" -eq 77 ]; then
      echo "skip - $name: $(tail -n 1 "$out")"
      skipped=$((skipped + 1))
    else
      echo "not ok - $name"
      sed 's/^/    /' "$out"
      failed=$((failed + 1))
    fi
  fi
}
skip() { echo "$*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
mode_of() { stat -c %a "$1"; }

# A stand-in for the release binary: install.sh only copies it and asks for --version.
fake_bin="$work/rtcd"
printf '#!/bin/sh\necho "rtcd v0.0.0-test (ops suite)"\n' >"$fake_bin"
chmod 0755 "$fake_bin"

install_to() { # destdir [args...]
  local d=$1
  shift
  scripts/install.sh --destdir "$d" --binary "$fake_bin" "$@"
}

# --------------------------------------------------------------------------- install.sh

install_dry_run_changes_nothing() {
  local d="$work/dry"
  local out
  out=$(install_to "$d" --dry-run)
  echo "$out"
  [ ! -e "$d" ] || fail "dry run created $d: $(find "$d")"
  grep -q '^\[dry-run\] install -D -m 0755 .*/usr/local/bin/rtcd' <<<"$out" || fail "binary install not shown"
  grep -q 'etc/systemd/system/rtcd.service' <<<"$out" || fail "unit install not shown"
  grep -q 'etc/rtcd/config.toml' <<<"$out" || fail "config not shown"
}

install_dry_run_on_the_host_prints_host_changes_and_makes_none() {
  [ "$(id -u)" -eq 0 ] || skip "needs root to reach the host-mode checks"
  command -v systemctl >/dev/null || skip "no systemctl here"
  command -v useradd >/dev/null || skip "no useradd here"
  local paths=(/usr/local/bin/rtcd /usr/local/lib/rtcd /etc/rtcd /etc/systemd/system/rtcd.service
    /etc/sysctl.d/99-rtcd.conf /var/lib/rtcd /var/log/rtcd)
  local before after out p
  before=$(for p in "${paths[@]}"; do stat -c '%n %a %s %Y' "$p" 2>/dev/null || echo "$p absent"; done; getent passwd rtcd || true)
  out=$(scripts/install.sh --dry-run --binary "$fake_bin" 2>&1)
  echo "$out"
  after=$(for p in "${paths[@]}"; do stat -c '%n %a %s %Y' "$p" 2>/dev/null || echo "$p absent"; done; getent passwd rtcd || true)
  [ "$before" = "$after" ] || fail "the host changed: $before -> $after"
  grep -q '^\[dry-run\] systemctl enable rtcd.service' <<<"$out" || fail "no systemctl enable shown"
  getent passwd rtcd >/dev/null || grep -q '^\[dry-run\] useradd --system' <<<"$out" || fail "no useradd shown"
  if grep -q '^set ' <<<"$out"; then fail "live kernel values were changed"; fi
}

install_on_a_host_without_systemd_running_says_so() {
  [ "$(id -u)" -eq 0 ] || skip "needs root to reach the host-mode checks"
  command -v systemctl >/dev/null || skip "no systemctl here"
  command -v useradd >/dev/null || skip "no useradd here"
  local out
  if out=$(RTCD_SYSTEMD_RUN_DIR="$work/no-such-dir" scripts/install.sh --binary "$fake_bin" 2>&1); then
    fail "installed without systemd"
  fi
  echo "$out"
  grep -q 'systemd is not running' <<<"$out" || fail "unclear error"
}

install_into_destdir_puts_files_in_place_with_their_modes() {
  local d="$work/root1"
  install_to "$d"
  local want
  while read -r path want; do
    [ -e "$d$path" ] || fail "missing $path"
    [ "$(mode_of "$d$path")" = "$want" ] || fail "$path has mode $(mode_of "$d$path"), want $want"
  done <<'EOF'
/usr/local/bin/rtcd 755
/usr/local/lib/rtcd/tune.sh 755
/usr/local/lib/rtcd/irq-affinity.sh 755
/usr/local/lib/rtcd/99-rtcd.conf 644
/etc/systemd/system/rtcd.service 644
/etc/sysctl.d/99-rtcd.conf 644
/etc/rtcd 750
/etc/rtcd/config.toml 640
/var/lib/rtcd 750
/var/log/rtcd 750
EOF
  cmp "$d/etc/sysctl.d/99-rtcd.conf" tuning/99-rtcd.conf || fail "sysctl drop-in differs from tuning/99-rtcd.conf"
  grep -qx 'ExecStart=/usr/local/bin/rtcd --config /etc/rtcd/config.toml' "$d/etc/systemd/system/rtcd.service" ||
    fail "unit does not start the installed binary with the installed config"
}

install_writes_config_with_store_in_the_state_directory() {
  local d="$work/root2"
  install_to "$d" --no-tune
  local c="$d/etc/rtcd/config.toml"
  grep -qx 'data_source = "/var/lib/rtcd"' "$c" || fail "store.data_source not set"
  grep -q '^enable_file = false' "$c" || fail "file logging not off"
  grep -qx 'file_location = "/var/log/rtcd/rtcd.log"' "$c" || fail "log path not under /var/log/rtcd"
  # Everything else is the sample, line for line.
  local n
  n=$(diff config/config.sample.toml "$c" | grep -c '^>' || true)
  [ "$n" -eq 4 ] || fail "expected 4 changed lines against the sample, got $n"
  [ ! -e "$d/etc/sysctl.d/99-rtcd.conf" ] || fail "--no-tune installed the sysctl drop-in"
  grep -q 'ReadWritePaths=.*/var/lib/rtcd' deploy/rtcd.service || fail "unit cannot write the store"
}

install_does_not_overwrite_an_existing_config() {
  local d="$work/root3"
  install_to "$d"
  echo '# edited by the operator' >>"$d/etc/rtcd/config.toml"
  local before out
  before=$(sha256sum <"$d/etc/rtcd/config.toml")
  out=$(install_to "$d")
  echo "$out"
  [ "$(sha256sum <"$d/etc/rtcd/config.toml")" = "$before" ] || fail "config was overwritten"
  grep -q 'kept existing /etc/rtcd/config.toml' <<<"$out" || fail "no 'kept existing' message"
}

install_twice_changes_nothing_the_second_time() {
  local d="$work/root4"
  install_to "$d"
  local before after out
  before=$(cd "$d" && find . -printf '%p %m %s\n' | sort && find . -type f -exec sha256sum {} + | sort)
  out=$(install_to "$d")
  echo "$out"
  after=$(cd "$d" && find . -printf '%p %m %s\n' | sort && find . -type f -exec sha256sum {} + | sort)
  [ "$before" = "$after" ] || fail "second run changed the tree"
  ! grep -q 'installed /' <<<"$out" || fail "second run re-installed a file"
}

install_replaces_a_changed_binary() {
  local d="$work/root5"
  install_to "$d"
  local nb="$work/rtcd-new"
  printf '#!/bin/sh\necho "rtcd v0.0.1-test"\n' >"$nb"
  chmod 0755 "$nb"
  local out
  out=$(scripts/install.sh --destdir "$d" --binary "$nb")
  echo "$out"
  cmp "$nb" "$d/usr/local/bin/rtcd" || fail "binary not replaced"
  grep -q 'binary: rtcd v0.0.1-test' <<<"$out" || fail "new version not reported"
}

install_with_a_prefix_points_the_unit_at_the_prefixed_binary() {
  local d="$work/root9"
  install_to "$d" --prefix /opt/rtcd --no-tune
  [ -x "$d/opt/rtcd/bin/rtcd" ] || fail "binary not under the prefix"
  [ -x "$d/opt/rtcd/lib/rtcd/tune.sh" ] || fail "scripts not under the prefix"
  [ ! -e "$d/usr/local/bin/rtcd" ] || fail "installed to /usr/local too"
  grep -qx 'ExecStart=/opt/rtcd/bin/rtcd --config /etc/rtcd/config.toml' "$d/etc/systemd/system/rtcd.service" ||
    fail "unit ExecStart not rewritten: $(grep ExecStart "$d/etc/systemd/system/rtcd.service")"
  scripts/install.sh --destdir "$d" --prefix /opt/rtcd --uninstall
  [ ! -e "$d/opt/rtcd/bin/rtcd" ] || fail "uninstall with the prefix left the binary"
}

uninstall_removes_what_it_installed_and_keeps_config_and_credentials() {
  local d="$work/root6"
  install_to "$d"
  echo 'credentials' >"$d/var/lib/rtcd/rtcd.redb"
  scripts/install.sh --destdir "$d" --uninstall
  local f
  for f in /usr/local/bin/rtcd /usr/local/lib/rtcd /etc/systemd/system/rtcd.service /etc/sysctl.d/99-rtcd.conf; do
    [ ! -e "$d$f" ] || fail "$f still there"
  done
  [ -f "$d/etc/rtcd/config.toml" ] || fail "config removed"
  [ -f "$d/var/lib/rtcd/rtcd.redb" ] || fail "credential store removed"
  scripts/install.sh --destdir "$d" --uninstall --purge
  for f in /etc/rtcd /var/lib/rtcd /var/log/rtcd; do
    [ ! -e "$d$f" ] || fail "--purge left $f"
  done
}

install_on_the_host_refuses_to_run_without_root() {
  [ "$(id -u)" -eq 0 ] || {
    # Already unprivileged: the plain call must refuse.
    local out
    if out=$(scripts/install.sh --binary "$fake_bin" 2>&1); then fail "ran without root"; fi
    grep -q 'must run as root' <<<"$out" || fail "unclear error: $out"
    return 0
  }
  command -v setpriv >/dev/null || skip "setpriv not available to drop root"
  setpriv --reuid=65534 --regid=65534 --clear-groups test -r scripts/install.sh ||
    skip "the checkout is not readable by nobody"
  local out
  if out=$(setpriv --reuid=65534 --regid=65534 --clear-groups scripts/install.sh --binary /bin/true 2>&1); then
    fail "ran without root: $out"
  fi
  echo "$out"
  grep -q 'must run as root' <<<"$out" || fail "unclear error"
}

install_without_cargo_or_binary_names_the_missing_tool() {
  local out
  # Only where cargo is not on the system PATH (it would otherwise really build).
  if PATH=/usr/sbin:/usr/bin:/sbin:/bin command -v cargo >/dev/null; then
    skip "cargo is on the system PATH"
  fi
  if out=$(PATH=/usr/sbin:/usr/bin:/sbin:/bin scripts/install.sh --destdir "$work/root7" 2>&1); then
    fail "installed without a binary"
  fi
  echo "$out"
  grep -q "required tool 'cargo' not found" <<<"$out" || fail "missing tool not named"
  grep -q -- '--binary' <<<"$out" || fail "no hint at --binary"
}

install_rejects_a_binary_that_does_not_run() {
  local bad="$work/not-rtcd"
  printf 'not a program\n' >"$bad"
  chmod 0755 "$bad"
  local out
  if out=$(scripts/install.sh --destdir "$work/root8" --binary "$bad" 2>&1); then fail "accepted $bad"; fi
  echo "$out"
  grep -q -- '--version failed' <<<"$out" || fail "unclear error"
  [ ! -e "$work/root8/usr/local/bin/rtcd" ] || fail "installed it anyway"
}

# --------------------------------------------------------------------------- systemd unit

unit_passes_systemd_analyze_verify() {
  command -v systemd-analyze >/dev/null || skip "systemd-analyze not installed (apt-get install systemd)"
  local u="$work/unit"
  mkdir -p "$u"
  cp "$fake_bin" "$u/rtcd"
  sed "s#^ExecStart=/usr/local/bin/rtcd #ExecStart=$u/rtcd #" deploy/rtcd.service >"$u/rtcd.service"
  local out
  out=$(systemd-analyze verify "$u/rtcd.service" 2>&1) || {
    # Some containers cannot run the verifier at all (no /run/systemd, no D-Bus).
    if grep -qiE 'Failed to (initialize|connect|setup)|System has not been booted' <<<"$out"; then
      skip "systemd-analyze cannot run here: $(head -n 1 <<<"$out")"
    fi
    fail "$out"
  }
  [ -z "$out" ] || fail "warnings: $out"
}

unit_has_no_capabilities_and_a_strict_sandbox() {
  local u=deploy/rtcd.service want
  for want in 'CapabilityBoundingSet=' 'AmbientCapabilities=' 'NoNewPrivileges=yes' 'ProtectSystem=strict' \
    'ProtectHome=yes' 'PrivateTmp=yes' 'StateDirectory=rtcd' 'Restart=always'; do
    grep -qx "$want" "$u" || fail "missing $want"
  done
  grep -q '^LimitNOFILE=' "$u" || fail "no LimitNOFILE"
  grep -q '^LimitMEMLOCK=' "$u" || fail "no LimitMEMLOCK"
  grep -q '^#CPUAffinity=' "$u" || fail "no commented CPUAffinity example"
  # Stop timeout covers the default drain (30 s) + close (2 s) + HTTP shutdown (10 s).
  local t
  t=$(sed -nE 's/^TimeoutStopSec=([0-9]+)s?$/\1/p' "$u")
  if [ -z "$t" ] || [ "$t" -lt 42 ]; then fail "TimeoutStopSec=$t is shorter than the default drain"; fi
}

# --------------------------------------------------------------------------- tune.sh

fake_proc() { # dir: a host with stock kernel values
  local p=$1
  mkdir -p "$p/net/core" "$p/net/ipv4"
  echo 212992 >"$p/net/core/rmem_max"
  echo 212992 >"$p/net/core/wmem_max"
  echo 212992 >"$p/net/core/rmem_default"
  echo 212992 >"$p/net/core/wmem_default"
  echo 1000 >"$p/net/core/netdev_max_backlog"
  printf '188301\t251068\t376602\n' >"$p/net/ipv4/udp_mem"
  echo 0 >"$p/net/core/busy_poll"
  echo 0 >"$p/net/core/busy_read"
}

fake_tuned_proc() {
  local p=$1 key value
  fake_proc "$p"
  while read -r key value; do
    printf '%s\n' "$value" >"$p/${key//.//}"
  done < <(sed -nE 's/^([a-z0-9_.]+) *= *(.*)$/\1 \2/p' tuning/99-rtcd.conf)
}

tune_check_passes_on_a_tuned_host() {
  local p="$work/proc-tuned"
  fake_tuned_proc "$p"
  echo 67108864 >"$p/net/core/rmem_max" # larger than wanted is fine
  RTCD_PROC_SYS=$p RTCD_SYS_ROOT="$work/nosys" tuning/tune.sh --check
}

tune_check_fails_on_an_untuned_host_naming_the_key() {
  local p="$work/proc-one-low"
  fake_tuned_proc "$p"
  echo 212992 >"$p/net/core/rmem_max"
  local out rc=0
  out=$(RTCD_PROC_SYS=$p RTCD_SYS_ROOT="$work/nosys" tuning/tune.sh --check) || rc=$?
  echo "$out"
  [ "$rc" -eq 1 ] || fail "exit $rc, want 1"
  grep -qE '^net.core.rmem_max +212992 +16777216 +low' <<<"$out" || fail "rmem_max not reported low with current and wanted"
  [ "$(grep -c ' low$' <<<"$out")" -eq 1 ] || fail "other keys reported low"
}

tune_check_judges_every_position_of_udp_mem() {
  local p="$work/proc-udp"
  fake_tuned_proc "$p"
  echo '262144 524288 1000' >"$p/net/ipv4/udp_mem"
  local out rc=0
  out=$(RTCD_PROC_SYS=$p RTCD_SYS_ROOT="$work/nosys" tuning/tune.sh --check) || rc=$?
  echo "$out"
  [ "$rc" -eq 1 ] || fail "exit $rc"
  grep -qE '^net.ipv4.udp_mem .* low$' <<<"$out" || fail "udp_mem not low"
}

tune_check_reports_a_missing_value() {
  local p="$work/proc-missing"
  fake_tuned_proc "$p"
  rm "$p/net/core/busy_read"
  local out rc=0
  out=$(RTCD_PROC_SYS=$p RTCD_SYS_ROOT="$work/nosys" tuning/tune.sh --check) || rc=$?
  echo "$out"
  [ "$rc" -eq 1 ] || fail "exit $rc"
  grep -qE '^net.core.busy_read .* unreadable$' <<<"$out" || fail "busy_read not reported unreadable"
}

tune_apply_raises_low_values_and_never_lowers_one() {
  local p="$work/proc-apply"
  fake_proc "$p"
  echo 33554432 >"$p/net/core/wmem_max"
  printf '300000 600000 900000\n' >"$p/net/ipv4/udp_mem"
  RTCD_PROC_SYS=$p RTCD_SYS_ROOT="$work/nosys" tuning/tune.sh --apply --dry-run
  [ "$(cat "$p/net/core/rmem_max")" = 212992 ] || fail "--dry-run wrote"
  RTCD_PROC_SYS=$p RTCD_SYS_ROOT="$work/nosys" tuning/tune.sh --apply
  [ "$(cat "$p/net/core/rmem_max")" = 16777216 ] || fail "rmem_max not raised"
  [ "$(cat "$p/net/core/wmem_max")" = 33554432 ] || fail "wmem_max lowered"
  [ "$(cat "$p/net/ipv4/udp_mem")" = "300000 600000 1048576" ] || fail "udp_mem: $(cat "$p/net/ipv4/udp_mem")"
  RTCD_PROC_SYS=$p RTCD_SYS_ROOT="$work/nosys" tuning/tune.sh --check
}

tune_check_flags_a_powersave_cpu_governor() {
  local p="$work/proc-gov" s="$work/sys-gov"
  fake_tuned_proc "$p"
  mkdir -p "$s/devices/system/cpu/cpu0/cpufreq" "$s/devices/system/cpu/cpu1/cpufreq"
  echo performance >"$s/devices/system/cpu/cpu0/cpufreq/scaling_governor"
  echo powersave >"$s/devices/system/cpu/cpu1/cpufreq/scaling_governor"
  local out rc=0
  out=$(RTCD_PROC_SYS=$p RTCD_SYS_ROOT=$s tuning/tune.sh --check) || rc=$?
  echo "$out"
  [ "$rc" -eq 1 ] || fail "exit $rc"
  grep -qE '^cpu.scaling_governor +powersave \(1 of 2 cpus\).* low$' <<<"$out" || fail "governor not flagged"
  RTCD_PROC_SYS=$p RTCD_SYS_ROOT=$s tuning/tune.sh --apply
  [ "$(cat "$s/devices/system/cpu/cpu1/cpufreq/scaling_governor")" = performance ] || fail "governor not set"
}

tune_apply_on_the_real_host_needs_root() {
  [ "$(id -u)" -eq 0 ] || {
    local out
    if out=$(tuning/tune.sh --apply 2>&1); then fail "applied without root"; fi
    grep -q 'must run as root' <<<"$out" || fail "unclear: $out"
    return 0
  }
  command -v setpriv >/dev/null || skip "setpriv not available to drop root"
  setpriv --reuid=65534 --regid=65534 --clear-groups test -r tuning/tune.sh || skip "checkout not readable by nobody"
  local out
  if out=$(setpriv --reuid=65534 --regid=65534 --clear-groups tuning/tune.sh --apply 2>&1); then
    fail "applied without root"
  fi
  echo "$out"
  grep -q 'must run as root' <<<"$out" || fail "unclear error"
}

# --------------------------------------------------------------------------- irq-affinity.sh

fake_nic() { # sysroot procroot
  local s=$1 p=$2 q
  mkdir -p "$s/class/net/eth9/device/msi_irqs"
  for q in rx-0 tx-0 tx-1; do mkdir -p "$s/class/net/eth9/queues/$q"; done
  echo 0 >"$s/class/net/eth9/queues/rx-0/rps_cpus"
  echo 00000000 >"$s/class/net/eth9/queues/tx-0/xps_cpus"
  echo 00000000 >"$s/class/net/eth9/queues/tx-1/xps_cpus"
  for q in 40 41 42; do
    touch "$s/class/net/eth9/device/msi_irqs/$q"
    mkdir -p "$p/irq/$q"
    echo 0-3 >"$p/irq/$q/smp_affinity_list"
  done
  mkdir -p "$s/class/net/eth8/queues/rx-0"
  echo 0 >"$s/class/net/eth8/queues/rx-0/rps_cpus"
}

irq_affinity_spreads_irqs_and_steering_over_the_worker_cores() {
  local s="$work/sys-nic" p="$work/proc-nic"
  fake_nic "$s" "$p"
  local env=(env RTCD_SYS_ROOT="$s" RTCD_PROC_ROOT="$p")
  local rc=0
  "${env[@]}" tuning/irq-affinity.sh --check --cpus 2-3 eth9 || rc=$?
  [ "$rc" -eq 1 ] || fail "--check on a misaligned NIC exited $rc"
  "${env[@]}" tuning/irq-affinity.sh --apply --dry-run --cpus 2-3 eth9
  [ "$(cat "$p/irq/40/smp_affinity_list")" = 0-3 ] || fail "--dry-run wrote"
  "${env[@]}" tuning/irq-affinity.sh --apply --cpus 2-3 eth9
  [ "$(cat "$p/irq/40/smp_affinity_list")" = 2 ] || fail "irq 40 not on core 2"
  [ "$(cat "$p/irq/41/smp_affinity_list")" = 3 ] || fail "irq 41 not on core 3"
  [ "$(cat "$p/irq/42/smp_affinity_list")" = 2 ] || fail "irq 42 not round-robin"
  [ "$(cat "$s/class/net/eth9/queues/rx-0/rps_cpus")" = 0000000c ] || fail "RPS not over cores 2-3 on a 1-queue NIC"
  [ "$(cat "$s/class/net/eth9/queues/tx-0/xps_cpus")" = 00000004 ] || fail "tx-0 XPS not core 2"
  [ "$(cat "$s/class/net/eth9/queues/tx-1/xps_cpus")" = 00000008 ] || fail "tx-1 XPS not core 3"
  [ "$(cat "$s/class/net/eth8/queues/rx-0/rps_cpus")" = 0 ] || fail "touched eth8, which was not named"
  "${env[@]}" tuning/irq-affinity.sh --check --cpus 2-3 eth9
}

irq_affinity_acts_only_on_named_interfaces() {
  local out rc=0
  out=$(RTCD_SYS_ROOT="$work/sys-none" tuning/irq-affinity.sh --apply 2>&1) || rc=$?
  echo "$out"
  [ "$rc" -eq 2 ] || fail "exit $rc without an interface"
  grep -q 'name at least one interface' <<<"$out" || fail "unclear"
  rc=0
  out=$(RTCD_SYS_ROOT="$work/sys-none" tuning/irq-affinity.sh --check nosuch0 2>&1) || rc=$?
  [ "$rc" -eq 2 ] || fail "exit $rc for an unknown interface"
}

# --------------------------------------------------------------------------- Kubernetes

k8s_manifests_parse_and_match_the_drain_timeout() {
  local py=""
  for py in python3 /usr/bin/python3 ""; do
    [ -n "$py" ] && "$py" -c 'import yaml, tomllib' 2>/dev/null && break
  done
  [ -n "$py" ] || skip "no python3 with yaml and tomllib (apt-get install python3-yaml)"
  "$py" - <<'EOF'
import glob, sys, tomllib, yaml
docs = []
for f in sorted(glob.glob("deploy/k8s/*.yaml")):
    if f.endswith("kustomization.yaml"):
        continue
    with open(f) as fh:
        docs += [d for d in yaml.safe_load_all(fh) if d]
kinds = {d["kind"]: d for d in docs}
for k in ("DaemonSet", "ConfigMap", "Service"):
    assert k in kinds, f"no {k}"
ds = kinds["DaemonSet"]["spec"]["template"]
spec = ds["spec"]
assert spec.get("hostNetwork") is True, "hostNetwork"
c = spec["containers"][0]
for probe in ("readinessProbe", "livenessProbe"):
    assert c[probe]["httpGet"]["path"] == "/version", probe
ann = ds["metadata"]["annotations"]
assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/path"] == "/metrics"
cfg = tomllib.loads(kinds["ConfigMap"]["data"]["config.toml"])
drain = cfg["rtc"]["drain_timeout_seconds"]
grace = spec["terminationGracePeriodSeconds"]
pre = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
pre_s = int(pre[1]) if pre[:1] == ["sleep"] else 0
assert grace >= pre_s + drain + 12, f"terminationGracePeriodSeconds {grace} < preStop {pre_s} + drain {drain} + 12"
aff = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
assert aff["topologyKey"] == "kubernetes.io/hostname"
svc = kinds["Service"]["spec"]
assert svc["clusterIP"] == "None", "headless service: DNS must list every node"
assert cfg["store"]["data_source"], "data_source"
print("ok: drain", drain, "grace", grace)
EOF
}

# --------------------------------------------------------------------------- shellcheck

shell_scripts_are_shellcheck_clean() {
  command -v shellcheck >/dev/null || skip "shellcheck not installed (apt-get install shellcheck)"
  shellcheck scripts/install.sh scripts/test.sh scripts/deps.sh scripts/ab.sh tuning/tune.sh tuning/irq-affinity.sh tests/ops/run.sh
}

for t in \
  install_dry_run_changes_nothing \
  install_dry_run_on_the_host_prints_host_changes_and_makes_none \
  install_on_a_host_without_systemd_running_says_so \
  install_into_destdir_puts_files_in_place_with_their_modes \
  install_writes_config_with_store_in_the_state_directory \
  install_does_not_overwrite_an_existing_config \
  install_twice_changes_nothing_the_second_time \
  install_replaces_a_changed_binary \
  install_with_a_prefix_points_the_unit_at_the_prefixed_binary \
  uninstall_removes_what_it_installed_and_keeps_config_and_credentials \
  install_on_the_host_refuses_to_run_without_root \
  install_without_cargo_or_binary_names_the_missing_tool \
  install_rejects_a_binary_that_does_not_run \
  unit_passes_systemd_analyze_verify \
  unit_has_no_capabilities_and_a_strict_sandbox \
  tune_check_passes_on_a_tuned_host \
  tune_check_fails_on_an_untuned_host_naming_the_key \
  tune_check_judges_every_position_of_udp_mem \
  tune_check_reports_a_missing_value \
  tune_apply_raises_low_values_and_never_lowers_one \
  tune_check_flags_a_powersave_cpu_governor \
  tune_apply_on_the_real_host_needs_root \
  irq_affinity_spreads_irqs_and_steering_over_the_worker_cores \
  irq_affinity_acts_only_on_named_interfaces \
  k8s_manifests_parse_and_match_the_drain_timeout \
  shell_scripts_are_shellcheck_clean; do
  case_ "$t" "$t"
done

echo
echo "ops: ${passed} passed, ${failed} failed, ${skipped} skipped"
[ "$failed" -eq 0 ]
