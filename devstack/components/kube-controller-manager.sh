# shellcheck shell=bash
# devstack component: kube-controller-manager of the local Kubernetes
# control plane (K8S_VERSION, built with kube-apiserver, see k8s/lib.sh).
# Secure port 127.0.0.1:KUBE_CONTROLLER_MANAGER_PORT (/healthz, /metrics).
# Sourced by devstack scripts after lib.sh.

# shellcheck source=SCRIPTDIR/../k8s/lib.sh
source "$DEVSTACK_DIR/k8s/lib.sh"

kube_controller_manager_ports() { echo "$KUBE_CONTROLLER_MANAGER_PORT"; }
kube_controller_manager_address() { echo "https://127.0.0.1:$KUBE_CONTROLLER_MANAGER_PORT"; }
kube_controller_manager_installed() { k8s_kubernetes_installed; }
kube_controller_manager_install() { k8s_build_kubernetes; }

kube_controller_manager_start() {
  local kc
  k8s_ensure_pki
  k8s_ensure_kubeconfigs
  kc="$(conf_dir kube-controller-manager)/kubeconfig"
  k8s_require kube-apiserver
  # --use-service-account-credentials: each controller gets its own SA and
  # RBAC role (as in a real cluster). No leader election: one instance, and
  # a restart would otherwise wait out the previous holder's lease.
  # All default controllers; nodeipam stays idle (no --allocate-node-cidrs),
  # kwok hands out pod IPs itself. The QPS/burst/concurrency defaults
  # (20/30/5) make a 1000-pod rollout crawl, hence the raised values.
  # Supervised like kube-scheduler (devstack/supervise.sh).
  start_process kube-controller-manager "$(log_file kube-controller-manager)" \
    bash "$DEVSTACK_DIR/supervise.sh" kube-controller-manager \
    "$K8S_BIN_DIR/kube-controller-manager" \
    --bind-address=127.0.0.1 \
    --secure-port="$KUBE_CONTROLLER_MANAGER_PORT" \
    --tls-cert-file="$K8S_PKI/kube-controller-manager-server.crt" \
    --tls-private-key-file="$K8S_PKI/kube-controller-manager-server.key" \
    --kubeconfig="$kc" \
    --authentication-kubeconfig="$kc" \
    --authorization-kubeconfig="$kc" \
    --client-ca-file="$K8S_PKI/ca.crt" \
    --requestheader-client-ca-file="$K8S_PKI/front-proxy-ca.crt" \
    --controllers='*' \
    --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$K8S_PKI/sa.key" \
    --root-ca-file="$K8S_PKI/ca.crt" \
    --cluster-signing-cert-file="$K8S_PKI/ca.crt" \
    --cluster-signing-key-file="$K8S_PKI/ca.key" \
    --cluster-name=devicefleet \
    --kube-api-qps="${KUBE_API_QPS:-500}" \
    --kube-api-burst="${KUBE_API_BURST:-1000}" \
    --concurrent-deployment-syncs=10 \
    --concurrent-replicaset-syncs=20 \
    --profiling=false
}

kube_controller_manager_healthy() {
  k8s_curl_healthz "$KUBE_CONTROLLER_MANAGER_PORT" "$K8S_PKI/ca.crt"
}

kube_controller_manager_wait() {
  wait_for kube-controller-manager "${KUBE_CONTROLLER_MANAGER_START_TIMEOUT:-60}" kube_controller_manager_healthy
}

kube_controller_manager_bootstrap() { :; }

kube_controller_manager_stop() { stop_process kube-controller-manager 30; }
