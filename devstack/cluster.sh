#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# devstack/cluster.sh up|down|status|rows - the platform in real pods on the local stack's
# node (components containerd, kubelet, kube-proxy), the way a user runs it on kind:
#   up      build the images and import them into the node (devstack/images/build.sh), install
#           the umbrella chart (release devicefleet, namespace devicefleet, quickstart Kafka,
#           Mosquitto and PostgreSQL in pods; values devstack/k8s/values-local.yaml), apply
#           examples/mining-trucks.yaml and wait until its rows are in the database
#   down    uninstall the release and delete the namespace
#   status  the release, its pods and fleets
#   rows    rows per fleet in the last minute (psql in the PostgreSQL pod)
# Needs `devstack/up.sh` first (with the node: root, DEVSTACK_NODE not off).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=k8s/lib.sh
source "$DEVSTACK_DIR/k8s/lib.sh"

RELEASE=devicefleet
NAMESPACE=devicefleet
EXAMPLE="$DEVSTACK_REPO/examples/mining-trucks.yaml"
export KUBECONFIG="${KUBECONFIG:-$KUBECONFIG_ADMIN}"

kubectl() { "$DEVSTACK_DIR/k8s/kubectl.sh" "$@"; }
helm() { "$DEVSTACK_DIR/k8s/helm.sh" "$@"; }

# psql_pod SQL: run SQL in the quickstart PostgreSQL pod as the chart's database user.
psql_pod() {
  # shellcheck disable=SC2016  # expanded by the pod's shell, from the pod's env
  kubectl -n "$NAMESPACE" exec "statefulset/$RELEASE-postgresql" -c postgresql -- \
    sh -c 'psql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -v ON_ERROR_STOP=1 "$@"' psql "$@"
}

up() {
  node_enabled || die "the real node is off (DEVSTACK_NODE=${DEVSTACK_NODE:-auto}, uid $(id -u)); use devstack/platform.sh up for the processes-only platform"
  is_running kubelet || die "the node is not running: run devstack/up.sh first"
  "$DEVSTACK_DIR/images/build.sh" all
  bash "$DEVSTACK_REPO/scripts/charts.sh" deps
  log "cluster: installing chart charts/devicefleet as release $RELEASE in namespace $NAMESPACE"
  # Fleets of the integration tests' namespaces belong to the operators the tests run.
  helm upgrade --install "$RELEASE" "$DEVSTACK_REPO/charts/devicefleet" \
    --namespace "$NAMESPACE" --create-namespace \
    -f "$DEVSTACK_DIR/k8s/values-local.yaml" \
    --set-json 'operator.watchNamespaces=["!devicefleet-test-*"]' \
    --wait --timeout 10m >/dev/null || {
    kubectl -n "$NAMESPACE" get pods -o wide >&2 || true
    die "cluster: helm install did not become ready (kubectl -n $NAMESPACE describe pods; logs: kubectl -n $NAMESPACE logs <pod>)"
  }
  kubectl -n "$NAMESPACE" apply -f "$EXAMPLE" >/dev/null
  wait_for_rows
  kubectl get pods -A -o wide
  kubectl -n "$NAMESPACE" get devicefleets
  cat <<EOF

The platform runs in pods on node $NODE_NAME ($NODE_IP). Where to look:
  devstack/k8s/kubectl.sh get pods -A -o wide
  devstack/k8s/kubectl.sh -n $NAMESPACE get devicefleets          (breakers, ready pods)
  devstack/k8s/kubectl.sh -n $NAMESPACE logs deploy/devicefleet-operator
  curl http://$NODE_IP:30080/health                               (ingest NodePort)
  devstack/cluster.sh rows                                          (rows per fleet, via psql in the pod)
  curl http://<pod IP>:<metrics port>/metrics                       (pod IPs are reachable from this machine)
EOF
}

# The example fleet's rows reach the quickstart PostgreSQL through Kafka, the processor and
# the sink, all in pods.
wait_for_rows() {
  local deadline=$((SECONDS + 180)) n=""
  log "cluster: waiting for rows of the example fleet"
  while ((SECONDS < deadline)); do
    n="$(psql_pod -tAX -c "SELECT count(DISTINCT device_id) FROM iot_measurements
                           WHERE ingested_at > now() - interval '1 minute'" 2>/dev/null || true)"
    if [[ "${n:-0}" =~ ^[0-9]+$ ]] && ((n > 0)); then
      log "cluster: rows from $n devices in the last minute"
      return 0
    fi
    sleep 2
  done
  kubectl -n "$NAMESPACE" get pods -o wide >&2 || true
  die "cluster: no rows within 180 s (kubectl -n $NAMESPACE logs deploy/devicefleet-sink)"
}

rows() {
  psql_pod -c "SELECT attributes->>'fleet' AS fleet, profile, count(*) AS rows,
               count(DISTINCT device_id) AS devices, max(time) AS newest
               FROM iot_measurements WHERE ingested_at > now() - interval '1 minute'
               GROUP BY 1, 2 ORDER BY 1"
}

down() {
  is_running kube-apiserver || { log "cluster: the apiserver is not running; nothing to uninstall"; return 0; }
  if helm status "$RELEASE" -n "$NAMESPACE" >/dev/null 2>&1; then
    kubectl -n "$NAMESPACE" delete devicefleets --all --wait=true --timeout=60s >/dev/null || true
    helm uninstall "$RELEASE" -n "$NAMESPACE" --wait --timeout 2m >/dev/null || true
  fi
  kubectl delete namespace "$NAMESPACE" --ignore-not-found --wait=true --timeout=120s >/dev/null || true
  log "cluster: release $RELEASE removed"
}

status() {
  if ! is_running kube-apiserver; then
    echo "cluster: the apiserver is not running"
    return 0
  fi
  helm status "$RELEASE" -n "$NAMESPACE" 2>/dev/null | sed -n '1,6p' || echo "release $RELEASE: not installed"
  kubectl get nodes -o wide
  kubectl -n "$NAMESPACE" get pods -o wide 2>/dev/null || true
  kubectl -n "$NAMESPACE" get devicefleets 2>/dev/null || true
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  rows) rows ;;
  *) die "usage: $0 up|down|status|rows" ;;
esac
