#!/usr/bin/env bash
# Installs rtcd as a systemd service on a Debian/Ubuntu host, in one command.
#
#   sudo scripts/install.sh                        build (cargo build --release) and install
#   sudo scripts/install.sh --binary PATH          install a binary built elsewhere
#   sudo scripts/install.sh --uninstall [--purge]  remove it again
#
# What it does (each step is skipped when already done, so it can be re-run to upgrade):
#   * installs the binary to PREFIX/bin/rtcd (PREFIX defaults to /usr/local) and the tuning
#     scripts to PREFIX/lib/rtcd/ (tune.sh, irq-affinity.sh, 99-rtcd.conf);
#   * creates the system user and group "rtcd" (no login, no home);
#   * writes /etc/rtcd/config.toml from config/config.sample.toml ONLY IF NONE EXISTS, with
#     store.data_source = "/var/lib/rtcd" and file logging off (journald keeps the console
#     output; logger.file_location points at /var/log/rtcd if you turn it on);
#   * creates /var/lib/rtcd (credential store) and /var/log/rtcd;
#   * installs deploy/rtcd.service to /etc/systemd/system, enables and starts it (restarts it
#     when the binary or unit changed: a restart drains running calls first);
#   * installs the sysctl drop-in to /etc/sysctl.d/99-rtcd.conf and raises the running
#     kernel's values to it (tune.sh --apply; never lowers a value).
#
# --uninstall stops and disables the service and removes the binary, the unit, the scripts and
# the sysctl drop-in. It KEEPS /etc/rtcd/config.toml, /var/lib/rtcd (registered plugin
# credentials), /var/log/rtcd and the rtcd user, like `apt remove`; add --purge to remove those
# too. Kernel values already applied stay until the next reboot.
#
# Options:
#   --binary PATH   install PATH instead of building
#   --prefix DIR    install prefix (default /usr/local)
#   --destdir DIR   stage everything under DIR (also: DESTDIR=DIR): no root needed, and the
#                   host is not touched (no user, no systemctl, no live sysctl)
#   --dry-run       print every change instead of making it
#   --no-tune       skip the sysctl drop-in and live tuning
#   --no-start      enable the service but do not start or restart it
#   --uninstall, --purge   see above
set -euo pipefail

say() { printf 'install.sh: %s%s\n' "${dry_tag:-}" "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,37p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

binary="" prefix=/usr/local destdir=${DESTDIR:-} dry_run=0 uninstall=0 purge=0 tune=1 start=1
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) [ $# -ge 2 ] || usage; binary=$2; shift ;;
    --prefix) [ $# -ge 2 ] || usage; prefix=$2; shift ;;
    --destdir) [ $# -ge 2 ] || usage; destdir=$2; shift ;;
    --dry-run) dry_run=1 ;;
    --uninstall) uninstall=1 ;;
    --purge) purge=1 ;;
    --no-tune) tune=0 ;;
    --no-start) start=0 ;;
    -h | --help) usage ;;
    *) echo "install.sh: unknown argument: $1" >&2; usage ;;
  esac
  shift
done
[ "$purge" = 0 ] || [ "$uninstall" = 1 ] || die "--purge only goes with --uninstall"
[ "$dry_run" = 0 ] || dry_tag="(dry run) "
case "$prefix" in /*) ;; *) die "--prefix must be an absolute path: $prefix" ;; esac
case "$destdir" in "" | /*) ;; *) destdir="$PWD/$destdir" ;; esac
destdir=${destdir%/}

repo=$(cd "$(dirname "$0")/.." && pwd)
host=1 # whether we act on the running host (user, systemd, live kernel values)
[ -z "$destdir" ] || host=0

need() { command -v "$1" >/dev/null 2>&1 || die "required tool '$1' not found${2:+ ($2)}"; }
need install coreutils
need sed sed
need cmp diffutils
if [ "$host" = 1 ]; then
  need systemctl "this script installs a systemd service; use --destdir to stage files only"
  need getent libc-bin
  if [ "$uninstall" = 0 ]; then need useradd passwd; fi
  if [ "$dry_run" = 0 ] && [ "$(id -u)" -ne 0 ]; then
    die "must run as root (sudo $0 ...), or stage with --destdir DIR / preview with --dry-run"
  fi
  # sd_booted(3): the host runs systemd as init.
  if [ ! -d "${RTCD_SYSTEMD_RUN_DIR:-/run/systemd/system}" ]; then
    if [ "$dry_run" = 1 ]; then
      say "note: systemd is not running on this host; a real install would stop here"
    else
      die "systemd is not running on this host (no /run/systemd/system): stage files with --destdir DIR instead"
    fi
  fi
fi

# Runs a command, or prints it under --dry-run.
run() {
  if [ "$dry_run" = 1 ]; then
    printf '[dry-run]'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

bin_path="$prefix/bin/rtcd"
lib_dir="$prefix/lib/rtcd"
unit_path=/etc/systemd/system/rtcd.service
sysctl_path=/etc/sysctl.d/99-rtcd.conf
conf_dir=/etc/rtcd
conf_path=$conf_dir/config.toml
data_dir=/var/lib/rtcd
log_dir=/var/log/rtcd
D=$destdir

# Installs SRC to DEST (under DESTDIR) with MODE when missing or different; returns 0 when
# it changed something.
put() {
  local src=$1 dest=$D$2 mode=$3
  if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
    [ "$(stat -c %a "$dest")" = "${mode#0}" ] || run chmod "$mode" "$dest"
    say "unchanged $2"
    return 1
  fi
  run install -D -m "$mode" "$src" "$dest"
  say "installed $2 (mode $mode)"
  return 0
}

# ------------------------------------------------------------------------------ uninstall
if [ "$uninstall" = 1 ]; then
  if [ "$host" = 1 ] && [ -e "$unit_path" ]; then
    run systemctl disable --now rtcd.service || true
  fi
  for f in "$bin_path" "$unit_path" "$sysctl_path" "$lib_dir/tune.sh" "$lib_dir/irq-affinity.sh" "$lib_dir/99-rtcd.conf"; do
    if [ -e "$D$f" ]; then
      run rm -f "$D$f"
      say "removed $f"
    fi
  done
  if [ -d "$D$lib_dir" ]; then run rmdir --ignore-fail-on-non-empty "$D$lib_dir"; fi
  [ "$host" = 0 ] || run systemctl daemon-reload
  if [ "$purge" = 1 ]; then
    for d in "$conf_dir" "$data_dir" "$log_dir"; do
      if [ -e "$D$d" ]; then
        run rm -rf "$D$d"
        say "purged $d"
      fi
    done
    if [ "$host" = 1 ] && getent passwd rtcd >/dev/null; then
      need userdel passwd
      run userdel rtcd
      say "removed user rtcd"
    fi
  else
    say "kept $conf_path, $data_dir (credentials) and $log_dir; --uninstall --purge removes them"
  fi
  say "uninstalled"
  exit 0
fi

# ------------------------------------------------------------------------------ install
[ -f "$repo/deploy/rtcd.service" ] || die "run from a checkout of the rtcd repository ($repo/deploy/rtcd.service missing)"
if [ -z "$binary" ]; then
  command -v cargo >/dev/null 2>&1 ||
    die "required tool 'cargo' not found: build first (cargo build --release) and pass --binary target/release/rtcd"
  say "building: cargo build --release --locked"
  (cd "$repo" && run cargo build --release --locked --bin rtcd)
  binary=$repo/target/release/rtcd
fi
if [ "$dry_run" = 0 ] || [ -e "$binary" ]; then
  if [ ! -f "$binary" ] || [ ! -x "$binary" ]; then
    die "binary $binary does not exist or is not executable"
  fi
  case "$binary" in /*) ;; *) binary="$PWD/$binary" ;; esac
  version=$("$binary" --version 2>/dev/null) || die "$binary --version failed: not an rtcd binary for this machine?"
  say "binary: $version"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

changed=0
if [ -e "$binary" ]; then put "$binary" "$bin_path" 0755 && changed=1; fi
put "$repo/tuning/tune.sh" "$lib_dir/tune.sh" 0755 || true
put "$repo/tuning/irq-affinity.sh" "$lib_dir/irq-affinity.sh" 0755 || true
put "$repo/tuning/99-rtcd.conf" "$lib_dir/99-rtcd.conf" 0644 || true

# System user.
if [ "$host" = 1 ]; then
  if getent passwd rtcd >/dev/null; then
    say "user rtcd exists"
  else
    run useradd --system --user-group --no-create-home --home-dir "$data_dir" \
      --shell /usr/sbin/nologin --comment "rtcd WebRTC SFU" rtcd
    say "created system user rtcd"
  fi
else
  say "skipped (DESTDIR): system user rtcd"
fi

# Directories. Ownership only on the real host (the user does not exist in a DESTDIR).
mkdirs() { # path mode owner
  if [ ! -d "$D$1" ]; then
    run install -d -m "$2" "$D$1"
    say "created $1 (mode $2)"
  fi
  if [ "$host" = 1 ]; then run chown "$3" "$D$1"; fi
}
mkdirs "$conf_dir" 0750 root:rtcd
mkdirs "$data_dir" 0750 rtcd:rtcd
mkdirs "$log_dir" 0750 rtcd:rtcd

# Config: written once, never overwritten.
if [ -e "$D$conf_path" ]; then
  say "kept existing $conf_path (not overwritten)"
else
  sed -e "s|^data_source = .*|data_source = \"$data_dir\"|" \
    -e "s|^file_location = .*|file_location = \"$log_dir/rtcd.log\"|" \
    -e 's|^enable_file = .*|enable_file = false  # journald keeps the console output (journalctl -u rtcd)|' \
    -e 's|^enable_color = .*|enable_color = false|' \
    "$repo/config/config.sample.toml" >"$tmp/config.toml"
  grep -q "^data_source = \"$data_dir\"" "$tmp/config.toml" || die "config.sample.toml has no store.data_source line to set"
  run install -m 0640 "$tmp/config.toml" "$D$conf_path"
  if [ "$host" = 1 ]; then run chown root:rtcd "$D$conf_path"; fi
  say "wrote $conf_path (store.data_source = \"$data_dir\")"
fi

# systemd unit, pointing at the installed binary.
sed -e "s#^ExecStart=/usr/local/bin/rtcd #ExecStart=$bin_path #" "$repo/deploy/rtcd.service" >"$tmp/rtcd.service"
put "$tmp/rtcd.service" "$unit_path" 0644 && changed=1

# Kernel tuning.
if [ "$tune" = 1 ]; then
  put "$repo/tuning/99-rtcd.conf" "$sysctl_path" 0644 || true
  if [ "$host" = 1 ]; then
    say "raising kernel values to $sysctl_path (tune.sh --apply)"
    if [ "$dry_run" = 1 ]; then
      RTCD_TUNING_CONF="$repo/tuning/99-rtcd.conf" "$repo/tuning/tune.sh" --apply --dry-run || true
    else
      RTCD_TUNING_CONF="$D$sysctl_path" "$D$lib_dir/tune.sh" --apply || say "some values are still below the wanted ones (see above)"
    fi
  else
    say "skipped (DESTDIR): live kernel tuning"
  fi
else
  say "skipped (--no-tune): sysctl drop-in and live tuning"
fi

# Service.
if [ "$host" = 1 ]; then
  run systemctl daemon-reload
  run systemctl enable rtcd.service
  if [ "$start" = 1 ]; then
    if [ "$changed" = 1 ] && systemctl is-active --quiet rtcd.service 2>/dev/null; then
      say "restarting rtcd (binary or unit changed; running calls are drained first)"
      run systemctl restart rtcd.service
    else
      run systemctl start rtcd.service
    fi
  fi
else
  say "skipped (DESTDIR): systemctl daemon-reload/enable/start"
fi

say "done. Check: curl http://localhost:8045/version ; $lib_dir/tune.sh --check ; journalctl -u rtcd"
