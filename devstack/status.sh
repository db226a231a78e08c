#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# devstack/status.sh [--check] [component...] - table of component, state
# (running = process alive and health check passes / unhealthy = process
# alive but check fails / stopped), pid, address and log file.
# Always exits 0, except with --check: exits 1 if any component is not
# running and healthy.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
load_components

check=""
args=()
for a in "$@"; do
  case "$a" in
    --check) check=1 ;;
    -h | --help) sed -n '2,6p' "$0"; exit 0 ;;
    *) args+=("$a") ;;
  esac
done
select_components "${args[@]}"

fmt='%-11s %-10s %-8s %-44s %s\n'
# shellcheck disable=SC2059
printf "$fmt" COMPONENT STATE PID ADDRESS LOG
bad=0
notes=()
for c in "${SELECTED[@]}"; do
  f="$(fn_name "$c")"
  if pid="$(pid_of "$c")"; then
    if "${f}_healthy" >/dev/null 2>&1; then state=running; else state=unhealthy; bad=1; fi
  else
    pid=-
    state=stopped
    bad=1
    for port in $("${f}_ports"); do
      if port_in_use "$port"; then
        notes+=("$c: port $port is in use by a process devstack did not start")
      fi
    done
  fi
  # shellcheck disable=SC2059
  printf "$fmt" "$c" "$state" "$pid" "$("${f}_address")" "$(log_file "$c")"
done
if node_enabled; then
  node_diagnose
fi
for n in "${notes[@]}"; do
  printf 'note: %s\n' "$n"
done
if [[ -n "$check" && $bad -ne 0 ]]; then
  exit 1
fi
exit 0
