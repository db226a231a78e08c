#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# devstack/up.sh [component...] - install (if needed), start and health-check
# the local data stack (default: postgres kafka mosquitto prometheus, in that
# order). Idempotent: a component that is already running and healthy is
# left alone. Exits non-zero naming the component that did not come up.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
load_components
select_components "$@"
with_lock
ensure_state_dirs
t_start=$SECONDS

# 1. install what is missing
"$DEVSTACK_DIR/install.sh" "${SELECTED[@]}"

# 2. start everything that is not running (in order, without waiting, so
#    the slow JVM start overlaps with the others)
for c in "${SELECTED[@]}"; do
  f="$(fn_name "$c")"
  if pid="$(pid_of "$c")"; then
    log "$c: already running (pid $pid)"
    continue
  fi
  for port in $("${f}_ports"); do
    if port_in_use "$port"; then
      die "$c: 127.0.0.1:$port is already in use by a process devstack did not start (see: ss -ltnp 'sport = :$port')"
    fi
  done
  "${f}_start" || die "$c: failed to start (see $(log_file "$c"))"
done

# 3. wait until each is healthy, then run its idempotent bootstrap
for c in "${SELECTED[@]}"; do
  f="$(fn_name "$c")"
  "${f}_wait" || die "$c did not come up (log: $(log_file "$c"))"
  "${f}_bootstrap"
  log "$c: healthy at $("${f}_address")"
done

log "up: ${SELECTED[*]} healthy in $((SECONDS - t_start))s (state: $DEVSTACK_STATE)"
