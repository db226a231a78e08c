# shellcheck shell=bash
# devstack component: kubelet (K8S_VERSION, built with the control plane, see k8s/lib.sh) on
# containerd: the real node NODE_NAME, where pods really run. Registers with the label
# devicefleet.io/node-kind=real and no taint, so a pod lands here unless it asks for the kwok
# nodes (which are tainted). Its bootstrap adds cluster DNS (CoreDNS, a Deployment in
# kube-system as in real clusters). Sourced by devstack scripts after lib.sh.

# shellcheck source=SCRIPTDIR/../k8s/lib.sh
source "$DEVSTACK_DIR/k8s/lib.sh"
# shellcheck source=SCRIPTDIR/../k8s/node.sh
source "$DEVSTACK_DIR/k8s/node.sh"

kubelet_ports() { echo "$KUBELET_HEALTHZ_PORT"; }
kubelet_address() { echo "https://$NODE_IP:$KUBELET_PORT (node $NODE_NAME)"; }

kubelet_installed() { k8s_kubernetes_installed && coredns_installed; }
kubelet_install() {
  k8s_build_kubernetes
  coredns_install
}

kubelet_configure() {
  local conf
  conf="$(conf_dir kubelet)"
  mkdir -p "$conf" "$(data_dir kubelet)"
  # resolvConf "": pods get only the cluster DNS, never this machine's upstream resolver.
  # Evictions and image GC are set for a shared development machine: they should not start
  # deleting pods or images because other work fills the disk. failCgroupV1: false lets
  # kubelet run where the machine has cgroup v1 (or hybrid) hierarchies (node_cgroup_mode).
  cat >"$conf/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $K8S_PKI/kubelet-server.crt
tlsPrivateKeyFile: $K8S_PKI/kubelet-server.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $K8S_PKI/ca.crt}
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://$NODE_CONTAINERD_SOCKET
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDNS: [$CLUSTER_DNS_IP]
clusterDomain: cluster.local
resolvConf: ""
podCIDR: $NODE_POD_CIDR
podLogsDir: $(data_dir kubelet)/pod-logs
serializeImagePulls: false
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
registerNode: true
nodeStatusReportFrequency: 10s
YAML
}

kubelet_start() {
  node_network_ensure
  kubelet_configure
  k8s_require kube-apiserver
  k8s_require containerd 60
  start_process kubelet "$(log_file kubelet)" "$K8S_BIN_DIR/kubelet" \
    --config="$(conf_dir kubelet)/config.yaml" \
    --kubeconfig="$(conf_dir kubelet)/kubeconfig" \
    --root-dir="$(data_dir kubelet)" \
    --hostname-override="$NODE_NAME" \
    --node-ip="$NODE_IP" \
    --node-labels="$NODE_LABEL_KEY=real" \
    --v=1
}

_kubelet_healthz_ok() { [[ "$(curl -fsS --max-time 3 "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz")" == ok ]]; }

_kubelet_node_ready() {
  [[ "$(kubectl_admin get node "$NODE_NAME" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

kubelet_healthy() { _kubelet_healthz_ok && _kubelet_node_ready; }
kubelet_wait() { wait_for kubelet "${KUBELET_START_TIMEOUT:-90}" kubelet_healthy; }

kubelet_bootstrap() { coredns_apply; }

kubelet_stop() { stop_process kubelet 30; }

# --------------------------------------------------------------------------
# Cluster DNS: CoreDNS (the version kubeadm K8S_VERSION deploys) from its Go module, in a
# locally built image, as the Deployment + Service kube-dns at CLUSTER_DNS_IP that kubeadm
# clusters have.
# --------------------------------------------------------------------------
COREDNS_VERSION=v1.14.2
COREDNS_BIN_DIR="$DEVSTACK_CACHE/coredns-$COREDNS_VERSION/bin"
COREDNS_IMAGE="localhost/devicefleet/coredns:$COREDNS_VERSION"

coredns_installed() {
  [[ -x "$COREDNS_BIN_DIR/coredns" ]] &&
    _k8s_marker_ok "$(dirname "$COREDNS_BIN_DIR")" "github.com/coredns/coredns@$COREDNS_VERSION"
}

coredns_install() {
  k8s_go_install coredns github.com/coredns/coredns "$COREDNS_VERSION" "$COREDNS_BIN_DIR" \
    "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION"
}

coredns_apply() {
  "$DEVSTACK_DIR/images/build.sh" import coredns >/dev/null ||
    die "kubelet: could not build/import $COREDNS_IMAGE (devstack/images/build.sh)"
  render_template "$DEVSTACK_DIR/k8s/coredns.yaml" "$(conf_dir kubelet)/coredns.yaml" \
    "COREDNS_IMAGE=$COREDNS_IMAGE"
  kubectl_admin apply --server-side --force-conflicts --field-manager=devstack \
    -f "$(conf_dir kubelet)/coredns.yaml" >/dev/null || die "kubelet: could not apply CoreDNS"
  wait_for kubelet "${COREDNS_START_TIMEOUT:-120}" kubectl_admin -n kube-system rollout status \
    deployment/coredns --timeout=5s
}
