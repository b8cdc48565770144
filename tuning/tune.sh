#!/usr/bin/env bash
# Checks or applies rtcd's host tuning for UDP media.
#
#   tune.sh --check            print current vs wanted per setting; exit 1 when anything is untuned
#   tune.sh --apply [--dry-run] raise every setting below its wanted value (never lowers one),
#                              set the CPU frequency governor to "performance", then check again
#
# The wanted values are the sysctl drop-in 99-rtcd.conf (the same table the daemon checks at
# start-up: src/tuning.rs, kept equal by a test). Every value is a floor; multi-value keys
# (net.ipv4.udp_mem) are compared position by position. --apply changes the running kernel
# only; the drop-in in /etc/sysctl.d (scripts/install.sh puts it there) makes it permanent.
#
# Environment (for tests and staged roots):
#   RTCD_TUNING_CONF  the drop-in to read (default: 99-rtcd.conf beside this script, else
#                     /etc/sysctl.d/99-rtcd.conf)
#   RTCD_PROC_SYS     sysctl root (default /proc/sys)
#   RTCD_SYS_ROOT     sysfs root for the CPU governor (default /sys)
# Exit status: 0 tuned, 1 untuned (or --apply could not fix everything), 2 usage or setup error.
set -euo pipefail

usage() {
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

mode="" dry_run=0
for arg in "$@"; do
  case "$arg" in
    --check) mode=check ;;
    --apply) mode=apply ;;
    --dry-run) dry_run=1 ;;
    -h | --help) usage ;;
    *) echo "tune.sh: unknown argument: $arg" >&2; usage ;;
  esac
done
[ -n "$mode" ] || usage

here=$(cd "$(dirname "$0")" && pwd)
conf=${RTCD_TUNING_CONF:-}
if [ -z "$conf" ]; then
  if [ -f "$here/99-rtcd.conf" ]; then conf="$here/99-rtcd.conf"; else conf=/etc/sysctl.d/99-rtcd.conf; fi
fi
[ -r "$conf" ] || { echo "tune.sh: cannot read the wanted values from $conf (set RTCD_TUNING_CONF)" >&2; exit 2; }
proc_sys=${RTCD_PROC_SYS:-/proc/sys}
sys_root=${RTCD_SYS_ROOT:-/sys}

if [ "$mode" = apply ] && [ "$dry_run" = 0 ] && [ "$proc_sys" = /proc/sys ] && [ "$(id -u)" -ne 0 ]; then
  echo "tune.sh: --apply changes kernel settings and must run as root (or use --dry-run)" >&2
  exit 2
fi

# key=value lines of the drop-in, whitespace-normalised: "key<TAB>v1 v2 v3".
wanted_table() {
  local key value
  local -a words
  sed -e 's/[#;].*$//' "$conf" | while IFS='=' read -r key value; do
    key=$(echo "$key" | tr -d '[:space:]')
    key=${key#-}
    [ -n "$key" ] || continue
    read -r -a words <<<"$value"
    value="${words[*]}"
    printf '%s\t%s\n' "$key" "$value"
  done
}

path_of() { printf '%s/%s' "$proc_sys" "${1//.//}"; }

# Prints the verdict for a wanted and a current value: ok, low or malformed.
judge() {
  local -a want have
  read -r -a want <<<"$1"
  read -r -a have <<<"$2"
  if [ "${#want[@]}" -eq 0 ] || [ "${#want[@]}" -ne "${#have[@]}" ]; then
    echo malformed
    return
  fi
  local i verdict=ok
  for i in "${!want[@]}"; do
    [[ "${have[$i]}" =~ ^[0-9]+$ ]] || { echo malformed; return; }
    if [ "${have[$i]}" -lt "${want[$i]}" ]; then verdict=low; fi
  done
  echo "$verdict"
}

# Per position, the larger of wanted and current (apply never lowers a value).
raised() {
  local -a want have out
  read -r -a want <<<"$1"
  read -r -a have <<<"$2"
  local i
  for i in "${!want[@]}"; do
    if [[ "${have[$i]:-}" =~ ^[0-9]+$ ]] && [ "${have[$i]}" -gt "${want[$i]}" ]; then
      out+=("${have[$i]}")
    else
      out+=("${want[$i]}")
    fi
  done
  echo "${out[*]}"
}

governors() {
  local f
  for f in "$sys_root"/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor; do
    [ -e "$f" ] && echo "$f"
  done
  return 0
}

check() {
  local untuned=0 key want path cur verdict
  printf '%-30s %-26s %-26s %s\n' SETTING CURRENT WANTED "VERDICT (wanted is a floor)"
  while IFS=$'\t' read -r key want; do
    path=$(path_of "$key")
    if [ -r "$path" ]; then
      # shellcheck disable=SC2046,SC2005 # normalise tabs and newlines
      cur=$(echo $(cat "$path"))
      verdict=$(judge "$want" "$cur")
    else
      cur="-" verdict=unreadable
    fi
    [ "$verdict" = ok ] || untuned=$((untuned + 1))
    printf '%-30s %-26s %-26s %s\n' "$key" "$cur" "$want" "$verdict"
  done < <(wanted_table)

  local govs f g bad=0 n=0 first_bad=""
  govs=$(governors)
  if [ -z "$govs" ]; then
    printf '%-30s %-26s %-26s %s\n' cpu.scaling_governor "-" performance "n/a (no cpufreq: VM or fixed clock)"
  else
    while read -r f; do
      n=$((n + 1))
      g=$(cat "$f" 2>/dev/null || echo '?')
      if [ "$g" != performance ]; then
        bad=$((bad + 1))
        [ -n "$first_bad" ] || first_bad=$g
      fi
    done <<<"$govs"
    if [ "$bad" -eq 0 ]; then
      printf '%-30s %-26s %-26s %s\n' cpu.scaling_governor "performance ($n cpus)" performance ok
    else
      printf '%-30s %-26s %-26s %s\n' cpu.scaling_governor "$first_bad ($bad of $n cpus)" performance low
      untuned=$((untuned + 1))
    fi
  fi

  if [ "$untuned" -eq 0 ]; then
    echo "tune.sh: tuned"
    return 0
  fi
  echo "tune.sh: $untuned setting(s) untuned; run: tune.sh --apply (as root)"
  return 1
}

apply() {
  local key want path cur new
  while IFS=$'\t' read -r key want; do
    path=$(path_of "$key")
    if [ ! -e "$path" ]; then
      echo "skip $key: $path does not exist on this kernel"
      continue
    fi
    # shellcheck disable=SC2046,SC2005
    cur=$(echo $(cat "$path"))
    new=$(raised "$want" "$cur")
    [ "$new" = "$cur" ] && continue
    if [ "$dry_run" = 1 ]; then
      echo "would set $key: $cur -> $new"
    else
      echo "set $key: $cur -> $new"
      printf '%s\n' "$new" >"$path" || echo "tune.sh: could not write $path" >&2
    fi
  done < <(wanted_table)

  local f g
  while read -r f; do
    [ -n "$f" ] || continue
    g=$(cat "$f" 2>/dev/null || echo '?')
    [ "$g" = performance ] && continue
    if [ "$dry_run" = 1 ]; then
      echo "would set governor ${f#"$sys_root"/devices/system/cpu/}: $g -> performance"
    else
      echo performance >"$f" 2>/dev/null || echo "tune.sh: could not set $f to performance (not offered by this driver?)" >&2
    fi
  done < <(governors)
  [ "$dry_run" = 1 ] && return 0
  echo
  check
}

"$mode"
