#!/usr/bin/env bash
# devstack/platform.sh up|down|status
#
# Runs DeviceFleet's own services on the local stack as background processes:
# bridge, ingest, processor, sink, the operator (against the local control
# plane, placing simulator pods on kwok nodes), and one demo simulator per
# device profile (F2 controllers over MQTT, trucks over HTTP, generic sensors
# over MQTT).
# Uses the same process helpers, pid files and log directory as the brokers.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

VENV_BIN="$DEVSTACK_REPO/.venv/bin"
SERVICES=(sink processor bridge ingest operator)
# name profile transport devices status-port-offset
SIMULATORS=(
  "sim-f2 f2 mqtt 20 0"
  "sim-truck truck http 5 1"
  "sim-generic generic mqtt 10 2"
)

metrics_url() {
  case "$1" in
    operator) echo "http://127.0.0.1:$OPERATOR_LIVENESS_PORT/healthz" ;;
    ingest) echo "http://127.0.0.1:$INGEST_PORT/health" ;;
    bridge) echo "http://127.0.0.1:$BRIDGE_METRICS_PORT/metrics" ;;
    processor) echo "http://127.0.0.1:$PROCESSOR_METRICS_PORT/metrics" ;;
    sink) echo "http://127.0.0.1:$SINK_METRICS_PORT/metrics" ;;
  esac
}

# The operator runs against the local control plane; fleets' pods go to the
# kwok nodes and publish to this machine's broker and ingest.
export KUBECONFIG="${KUBECONFIG:-$DEVSTACK_STATE/kubeconfig}"
export OPERATOR_STANDALONE=true OPERATOR_METRICS_PORT OPERATOR_LIVENESS_PORT
# Every namespace but the integration tests' own, whose operator they run themselves.
export OPERATOR_NAMESPACES='["!devicefleet-test-*"]'
export OPERATOR_MQTT_HOST=127.0.0.1 OPERATOR_MQTT_PORT="$MQTT_PORT"
export OPERATOR_INGEST_URL="http://127.0.0.1:$INGEST_PORT"
export OPERATOR_NODE_SELECTOR='{"type":"kwok"}'
export OPERATOR_TOLERATIONS='[{"key":"kwok.x-k8s.io/node","operator":"Exists","effect":"NoSchedule"}]'
# The operator registers each fleet's devices, as the chart's operator does in a cluster.
export OPERATOR_DATABASE_URL="postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DATABASE"

bootstrap() {
  "$VENV_BIN/devicefleet-bootstrap" all
  for sim in "${SIMULATORS[@]}"; do
    read -r name profile _ devices _ <<<"$sim"
    "$VENV_BIN/devicefleet-bootstrap" register --profile "$profile" --fleet "demo-$profile" \
      --count "$devices" >/dev/null
  done
}

up() {
  [ -x "$VENV_BIN/devicefleet-ingest" ] || die "no virtualenv: run 'make install' first"
  bootstrap
  "$DEVSTACK_DIR/k8s/kubectl.sh" apply --server-side -f "$DEVSTACK_REPO/crds" >/dev/null
  for svc in "${SERVICES[@]}"; do
    if ! is_running "$svc"; then
      start_process "$svc" "$(log_file "$svc")" "$VENV_BIN/devicefleet-$svc"
    fi
  done
  for svc in "${SERVICES[@]}"; do
    wait_for "$svc" 30 curl -fsS "$(metrics_url "$svc")"
  done
  if ! is_running kwok-runner; then
    start_process kwok-runner "$(log_file kwok-runner)" "$VENV_BIN/python" \
      "$DEVSTACK_DIR/kwok_runner.py"
  fi
  for sim in "${SIMULATORS[@]}"; do
    read -r name profile transport devices offset <<<"$sim"
    local port=$((SIMULATOR_STATUS_PORT_BASE + offset))
    if ! is_running "$name"; then
      SIMULATOR_FLEET="demo-$profile" SIMULATOR_PROFILE="$profile" \
        SIMULATOR_TRANSPORT="$transport" SIMULATOR_DEVICE_COUNT="$devices" \
        SIMULATOR_STATUS_PORT="$port" SIMULATOR_INGEST_URL="http://127.0.0.1:$INGEST_PORT" \
        start_process "$name" "$(log_file "$name")" "$VENV_BIN/devicefleet-simulator"
    fi
    wait_for "$name" 30 curl -fsS "http://127.0.0.1:$port/health"
  done
  write_scrape_targets
  wait_for_rows
}

# Data is flowing once every profile has decoded rows in PostgreSQL.
wait_for_rows() {
  local deadline=$((SECONDS + 60)) profiles
  while ((SECONDS < deadline)); do
    profiles=$(psql_query "SELECT count(DISTINCT profile) FROM iot_measurements
                           WHERE ingested_at > now() - interval '1 minute'
                             AND attributes->>'fleet' LIKE 'demo-%'")
    [ "${profiles:-0}" -ge 3 ] && return 0
    sleep 1
  done
  die "no decoded rows from all three demo fleets within 60s; see $(log_file processor) and $(log_file sink)"
}

# Prometheus discovers the running simulators from this file (see components/prometheus.sh),
# job devicefleet-simulator, labelled like pods of the "devicefleet" namespace.
write_scrape_targets() {
  local sd entries="" sim name profile offset
  sd="$(conf_dir prometheus)/sd"
  mkdir -p "$sd"
  for sim in "${SIMULATORS[@]}"; do
    read -r name profile _ _ offset <<<"$sim"
    is_running "$name" || continue
    entries+="${entries:+,}{\"targets\":[\"127.0.0.1:$((SIMULATOR_STATUS_PORT_BASE + offset))\"],"
    entries+="\"labels\":{\"namespace\":\"devicefleet\",\"pod\":\"$name\","
    entries+="\"fleet\":\"demo-$profile\",\"profile\":\"$profile\"}}"
  done
  printf '[%s]\n' "$entries" >"$sd/simulators.json.tmp"
  mv "$sd/simulators.json.tmp" "$sd/simulators.json"
}

psql_query() {
  PGPASSWORD="$PG_PASSWORD" psql -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d "$PG_DATABASE" \
    -tAX -c "$1"
}

down() {
  local i
  for ((i = ${#SIMULATORS[@]} - 1; i >= 0; i--)); do
    read -r name _ <<<"${SIMULATORS[$i]}"
    stop_process "$name" 20
  done
  write_scrape_targets
  stop_process kwok-runner 30
  for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
    stop_process "${SERVICES[$i]}" 20
  done
}

status() {
  local name state
  for name in "${SERVICES[@]}" kwok-runner sim-f2 sim-truck sim-generic; do
    if is_running "$name"; then state="running (pid $(pid_of "$name"))"; else state=stopped; fi
    printf '%-11s %-22s %s\n' "$name" "$state" "$(log_file "$name")"
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) die "usage: $0 up|down|status" ;;
esac
