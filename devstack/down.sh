#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# devstack/down.sh [--purge] [component...] - stop what up.sh started (only
# the processes named by our pid files), in reverse start order. Data stays
# in place unless --purge is given, which also deletes the components' data
# dirs ($DEVSTACK_STATE/data/<component>). Logs, caches and installed
# packages are kept.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
load_components

purge=""
args=()
for a in "$@"; do
  case "$a" in
    --purge) purge=1 ;;
    -h | --help) sed -n '2,7p' "$0"; exit 0 ;;
    *) args+=("$a") ;;
  esac
done
select_components "${args[@]}"
with_lock

for ((i = ${#SELECTED[@]} - 1; i >= 0; i--)); do
  c="${SELECTED[$i]}"
  f="$(fn_name "$c")"
  if is_running "$c"; then
    "${f}_stop"
    log "$c: stopped"
  else
    stop_process "$c" >/dev/null   # clears a stale pid file, if any
    log "$c: not running"
  fi
done

if [[ -n "$purge" ]]; then
  for c in "${SELECTED[@]}"; do
    if [[ -d "$(data_dir "$c")" ]]; then
      rm -rf "$(data_dir "$c")"
      log "$c: purged $(data_dir "$c")"
    fi
  done
  if [[ ${#args[@]} -eq 0 ]]; then
    rm -rf "$DEVSTACK_DATA" "$DEVSTACK_RUN"
    log "purged $DEVSTACK_DATA"
  fi
fi
