#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# devstack/install.sh [component...] - idempotently install the local data
# stack's components (default: all). Kafka jars go to $DEVSTACK_CACHE; the
# rest are Debian packages (apt-get, only what is missing).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
load_components
select_components "$@"
ensure_state_dirs

for c in "${SELECTED[@]}"; do
  f="$(fn_name "$c")"
  if "${f}_installed"; then
    log "$c: already installed"
  else
    t0=$SECONDS
    "${f}_install"
    "${f}_installed" || die "$c: install finished but the component is still not usable"
    log "$c: installed in $((SECONDS - t0))s"
  fi
done
