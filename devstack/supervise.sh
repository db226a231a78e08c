#!/usr/bin/env bash
# devstack/supervise.sh NAME CMD... - runs CMD and starts it again a second after it exits,
# as a node's kubelet (static pods) or systemd does for control-plane components.
#
# kube-scheduler exits on purpose when it finds its cache corrupted (a pod bound while the
# API server was down, then reported on another node than it assumed); the real remedy is a
# restart, which is what clusters do. devstack starts kube-scheduler and
# kube-controller-manager under this (start_process NAME LOG bash supervise.sh NAME CMD...).
# SIGTERM or SIGINT stop CMD (TERM, then this waits for it) and then this script, so
# stop_process works unchanged; each restart is a line in the component's log.
set -uo pipefail
name="$1"
shift
child=0
stop() {
  trap - TERM INT
  if ((child > 0)); then
    kill -TERM "$child" 2>/dev/null
    wait "$child"
  fi
  exit 0
}
trap stop TERM INT
while :; do
  "$@" &
  child=$!
  wait "$child"
  rc=$?
  printf '==== devstack: %s exited (status %s) at %s; starting it again in 1 s\n' \
    "$name" "$rc" "$(date -Is)"
  sleep 1
done
