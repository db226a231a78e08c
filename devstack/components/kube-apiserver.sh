# shellcheck shell=bash
# devstack component: kube-apiserver of the local Kubernetes control plane
# (K8S_VERSION, built from source, see k8s/lib.sh). Serves TLS on
# 127.0.0.1:KUBE_APISERVER_PORT; admin kubeconfig: $DEVSTACK_STATE/kubeconfig.
# Its install also builds the clients: kubectl (same `go build` as the
# control plane binaries) and helm.
# Sourced by devstack scripts after lib.sh.

# shellcheck source=SCRIPTDIR/../k8s/lib.sh
source "$DEVSTACK_DIR/k8s/lib.sh"
# shellcheck source=SCRIPTDIR/../k8s/node.sh
source "$DEVSTACK_DIR/k8s/node.sh"

kube_apiserver_ports() { echo "$KUBE_APISERVER_PORT"; }
kube_apiserver_address() { echo "https://127.0.0.1:$KUBE_APISERVER_PORT"; }

kube_apiserver_installed() {
  k8s_kubernetes_installed && [[ -x "$HELM_BIN_DIR/helm" ]] &&
    _k8s_marker_ok "$(dirname "$HELM_BIN_DIR")" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

# helm stamps its version with -X like Kubernetes does (else "v3.x+unknown").
kube_apiserver_install() {
  k8s_build_kubernetes
  k8s_monitoring_crds_dir >/dev/null
  k8s_go_install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" "$HELM_BIN_DIR" \
    "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
}

kube_apiserver_start() {
  local net=(--bind-address=127.0.0.1 --advertise-address=127.0.0.1 --endpoint-reconciler-type=none)
  k8s_ensure_pki
  k8s_ensure_kubeconfigs
  k8s_require etcd
  # Admission plugins: the release's default set plus NodeRestriction (kubelet may only touch
  # its own Node and pods).
  # Without the real node everything is loopback: the "kubernetes" service cannot get
  # 127.0.0.1 as its endpoint (endpoint validation rejects loopback; the lease reconciler
  # would log that every 10 s), so the reconciler is off and the service has no endpoints.
  # With the real node, pods reach the apiserver at NODE_IP through that service: it listens
  # on all addresses, and node_network_ensure first closes the port to everything but lo and
  # the pod bridge.
  if node_enabled; then
    node_network_ensure
    net=(--bind-address=0.0.0.0 --advertise-address="$NODE_IP" --endpoint-reconciler-type=lease)
  fi
  start_process kube-apiserver "$(log_file kube-apiserver)" "$K8S_BIN_DIR/kube-apiserver" \
    "${net[@]}" \
    --enable-admission-plugins=NodeRestriction \
    --kubelet-client-certificate="$K8S_PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$K8S_PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$K8S_PKI/ca.crt" \
    --kubelet-preferred-address-types=InternalIP \
    --secure-port="$KUBE_APISERVER_PORT" \
    --etcd-servers="https://127.0.0.1:$ETCD_CLIENT_PORT" \
    --etcd-cafile="$K8S_PKI/etcd/ca.crt" \
    --etcd-certfile="$K8S_PKI/apiserver-etcd-client.crt" \
    --etcd-keyfile="$K8S_PKI/apiserver-etcd-client.key" \
    --tls-cert-file="$K8S_PKI/apiserver.crt" \
    --tls-private-key-file="$K8S_PKI/apiserver.key" \
    --client-ca-file="$K8S_PKI/ca.crt" \
    --authorization-mode=Node,RBAC \
    --allow-privileged=true \
    --service-cluster-ip-range="$KUBE_SERVICE_CIDR" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$K8S_PKI/sa.pub" \
    --service-account-signing-key-file="$K8S_PKI/sa.key" \
    --requestheader-client-ca-file="$K8S_PKI/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$K8S_PKI/front-proxy-client.crt" \
    --proxy-client-key-file="$K8S_PKI/front-proxy-client.key" \
    --max-requests-inflight="${KUBE_APISERVER_MAX_INFLIGHT:-800}" \
    --max-mutating-requests-inflight="${KUBE_APISERVER_MAX_MUTATING_INFLIGHT:-400}" \
    --profiling=false
}

# /readyz covers etcd, informers sync and the post-start hooks (RBAC
# bootstrap roles, priority classes, ...), i.e. "usable", not just "up".
kube_apiserver_healthy() {
  [[ "$(kubectl_admin get --raw /readyz 2>/dev/null)" == ok ]]
}

kube_apiserver_wait() { wait_for kube-apiserver "${KUBE_APISERVER_START_TIMEOUT:-90}" kube_apiserver_healthy; }

# What a cluster with kube-prometheus-stack serves: the monitoring.coreos.com API (CRDs only,
# no prometheus-operator), so charts render and validate their ServiceMonitors and rules.
# Server-side apply: the CRDs are too large for the last-applied annotation.
kube_apiserver_bootstrap() {
  kubectl_admin apply --server-side --force-conflicts --field-manager=devstack \
    -f "$(k8s_monitoring_crds_dir)" >/dev/null ||
    die "kube-apiserver: could not install the monitoring.coreos.com CRDs"
  wait_for kube-apiserver 60 _kube_apiserver_monitoring_established
}

_kube_apiserver_monitoring_established() {
  local kind
  for kind in servicemonitors podmonitors prometheusrules; do
    [[ "$(kubectl_admin get crd "$kind.monitoring.coreos.com" \
      -o 'jsonpath={.status.conditions[?(@.type=="Established")].status}' 2>/dev/null)" == True ]] ||
      return 1
  done
}

kube_apiserver_stop() { stop_process kube-apiserver 30; }
