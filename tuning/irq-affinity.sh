#!/usr/bin/env bash
# Aligns a NIC's interrupts and packet steering with rtcd's worker cores.
#
#   irq-affinity.sh --check [--cpus LIST] IFACE...            show current vs wanted; exit 1 on mismatch
#   irq-affinity.sh --apply [--dry-run] [--cpus LIST] IFACE... write the wanted values (root)
#
# Acts only on the interfaces named on the command line. LIST is the worker cores in the
# kernel's list format ("0-3,6"); default: every online CPU, which is where rtcd pins its
# workers when rtc.workers = 0 (worker i on the i-th core).
#
# What "wanted" means:
#   * IRQs of the NIC (its MSI vectors, else /proc/interrupts lines naming it): spread one per
#     worker core, round-robin, so each core handles the receive queue it then reads from.
#   * RPS (rx-N/rps_cpus): off (0) when the NIC has at least as many receive queues as worker
#     cores (hardware spreads the load); otherwise every rx queue may steer to all worker cores.
#   * XPS (tx-N/xps_cpus): transmit queue N is used by worker core N (mod the count), so a
#     worker sends on "its" queue without contention.
# irqbalance moves IRQs back every few seconds: stop it, or ban the worker cores from it
# (IRQBALANCE_BANNED_CPULIST), before --apply. Settings do not survive a reboot; run
# --apply from a unit or your provisioning after boot.
#
# Environment (tests): RTCD_SYS_ROOT (default /sys), RTCD_PROC_ROOT (default /proc).
# Exit status: 0 aligned (or applied), 1 misaligned, 2 usage or setup error.
set -euo pipefail

usage() {
  sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

mode="" dry_run=0 cpu_list="" ifaces=()
while [ $# -gt 0 ]; do
  case "$1" in
    --check) mode=check ;;
    --apply) mode=apply ;;
    --dry-run) dry_run=1 ;;
    --cpus) [ $# -ge 2 ] || usage; cpu_list=$2; shift ;;
    --cpus=*) cpu_list=${1#--cpus=} ;;
    -h | --help) usage ;;
    -*) echo "irq-affinity.sh: unknown option: $1" >&2; usage ;;
    *) ifaces+=("$1") ;;
  esac
  shift
done
[ -n "$mode" ] || usage
[ "${#ifaces[@]}" -gt 0 ] || { echo "irq-affinity.sh: name at least one interface (nothing is done to others)" >&2; exit 2; }

sys=${RTCD_SYS_ROOT:-/sys}
proc=${RTCD_PROC_ROOT:-/proc}
if [ "$mode" = apply ] && [ "$dry_run" = 0 ] && [ "$sys" = /sys ] && [ "$(id -u)" -ne 0 ]; then
  echo "irq-affinity.sh: --apply must run as root (or use --dry-run)" >&2
  exit 2
fi
if [ -z "$cpu_list" ]; then
  cpu_list=$(cat "$sys/devices/system/cpu/online" 2>/dev/null || echo "0-$(($(nproc) - 1))")
fi

# "0-3,6" -> "0 1 2 3 6"
expand() {
  local part a b out=()
  IFS=',' read -r -a parts <<<"$1"
  for part in "${parts[@]}"; do
    if [[ "$part" =~ ^([0-9]+)-([0-9]+)$ ]]; then
      a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]}
      while [ "$a" -le "$b" ]; do out+=("$a"); a=$((a + 1)); done
    elif [[ "$part" =~ ^[0-9]+$ ]]; then
      out+=("$part")
    else
      echo "irq-affinity.sh: bad CPU list: $1" >&2
      exit 2
    fi
  done
  echo "${out[*]}"
}

# CPU numbers -> the kernel's hex mask ("00000000,0000000f" style, high group first).
mask() {
  local c g max=0 hex=""
  local -a groups=()
  for c in "$@"; do
    g=$((c / 32))
    [ "$g" -gt "$max" ] && max=$g
    groups[g]=$((${groups[g]:-0} | (1 << (c % 32))))
  done
  for ((g = max; g >= 0; g--)); do
    hex+=$(printf '%08x' "${groups[g]:-0}")
    [ "$g" -gt 0 ] && hex+=","
  done
  echo "$hex"
}

# A mask without commas and leading zeros, for comparison ("-" stays "-").
norm() {
  local m=${1//,/}
  while [ "${m:0:1}" = 0 ]; do m=${m:1}; done
  echo "${m:-0}"
}

read -r -a cpus <<<"$(expand "$cpu_list")"
ncpus=${#cpus[@]}

irqs_of() {
  local iface=$1 f
  if [ -d "$sys/class/net/$iface/device/msi_irqs" ]; then
    for f in "$sys/class/net/$iface/device/msi_irqs"/*; do
      [ -e "$f" ] && basename "$f"
    done | sort -n
  elif [ -r "$proc/interrupts" ]; then
    awk -v n="$iface" '$NF ~ "^"n"([-_@].*)?$" { sub(":", "", $1); print $1 }' "$proc/interrupts"
  fi
}

mismatches=0
report() { # what current wanted path
  local verdict=ok
  if [ "$2" != "$3" ]; then
    verdict=differs
    mismatches=$((mismatches + 1))
  fi
  printf '%-34s %-20s %-20s %s\n' "$1" "$2" "$3" "$verdict"
  if [ "$verdict" = differs ] && [ "$mode" = apply ]; then
    if [ "$dry_run" = 1 ]; then
      echo "  would write $5 to $4"
    else
      printf '%s\n' "$5" >"$4" || echo "irq-affinity.sh: could not write $4" >&2
    fi
  fi
}

if [ "$proc" = /proc ] && command -v pidof >/dev/null 2>&1 && pidof irqbalance >/dev/null 2>&1; then
  echo "warning: irqbalance is running and will move these IRQs again; stop it or set IRQBALANCE_BANNED_CPULIST=$cpu_list"
fi
echo "worker cores: ${cpus[*]}"
printf '%-34s %-20s %-20s %s\n' WHAT CURRENT WANTED VERDICT
for iface in "${ifaces[@]}"; do
  dir="$sys/class/net/$iface"
  [ -d "$dir" ] || { echo "irq-affinity.sh: no interface $iface" >&2; exit 2; }

  k=0
  while read -r irq; do
    [ -n "$irq" ] || continue
    want=${cpus[$((k % ncpus))]}
    f="$proc/irq/$irq/smp_affinity_list"
    cur=$(cat "$f" 2>/dev/null || echo '-')
    report "$iface irq $irq" "$cur" "$want" "$f" "$want"
    k=$((k + 1))
  done < <(irqs_of "$iface")
  [ "$k" -gt 0 ] || echo "$iface: no IRQs found (virtual NIC?): RPS/XPS below do the spreading"

  rxq=("$dir"/queues/rx-*)
  [ -e "${rxq[0]}" ] || rxq=()
  if [ "${#rxq[@]}" -ge "$ncpus" ]; then want_rps=0; else want_rps=$(mask "${cpus[@]}"); fi
  for q in "${rxq[@]}"; do
    f="$q/rps_cpus"
    [ -e "$f" ] || continue
    report "$iface $(basename "$q") rps_cpus" "$(norm "$(cat "$f" 2>/dev/null || echo -)")" "$(norm "$want_rps")" "$f" "$want_rps"
  done

  txq=("$dir"/queues/tx-*)
  [ -e "${txq[0]}" ] || txq=()
  for q in "${txq[@]}"; do
    f="$q/xps_cpus"
    [ -e "$f" ] || continue
    n=${q##*tx-}
    want_xps=$(mask "${cpus[$((n % ncpus))]}")
    report "$iface $(basename "$q") xps_cpus" "$(norm "$(cat "$f" 2>/dev/null || echo -)")" "$(norm "$want_xps")" "$f" "$want_xps"
  done
done

if [ "$mode" = apply ]; then
  [ "$dry_run" = 1 ] && echo "dry run: nothing written"
  exit 0
fi
if [ "$mismatches" -gt 0 ]; then
  echo "irq-affinity.sh: $mismatches value(s) differ; run with --apply (as root)"
  exit 1
fi
echo "irq-affinity.sh: aligned"
