# shellcheck shell=bash
# devstack component: kube-proxy (K8S_VERSION, built with the control plane) in iptables mode
# on the real node: Service ClusterIPs and NodePorts for pods and for this machine. NodePorts
# listen on NODE_IP only (never on an outside interface). Sourced by devstack scripts after
# lib.sh.

# shellcheck source=SCRIPTDIR/../k8s/lib.sh
source "$DEVSTACK_DIR/k8s/lib.sh"
# shellcheck source=SCRIPTDIR/../k8s/node.sh
source "$DEVSTACK_DIR/k8s/node.sh"

kube_proxy_ports() { echo "$KUBE_PROXY_HEALTHZ_PORT $KUBE_PROXY_METRICS_PORT"; }
kube_proxy_address() { echo "http://127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT/healthz (iptables)"; }

kube_proxy_installed() { k8s_kubernetes_installed; }
kube_proxy_install() { k8s_build_kubernetes; }

kube_proxy_configure() {
  local conf
  conf="$(conf_dir kube-proxy)"
  mkdir -p "$conf"
  # conntrack maxPerCore/min 0: leave the machine's conntrack table size alone.
  cat >"$conf/config.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: $conf/kubeconfig
hostnameOverride: $NODE_NAME
clusterCIDR: $NODE_POD_CIDR
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$KUBE_PROXY_METRICS_PORT
nodePortAddresses: ["$NODE_IP/32"]
conntrack:
  maxPerCore: 0
  min: 0
YAML
}

kube_proxy_start() {
  node_network_ensure
  kube_proxy_configure
  k8s_require kube-apiserver
  start_process kube-proxy "$(log_file kube-proxy)" "$K8S_BIN_DIR/kube-proxy" \
    --config="$(conf_dir kube-proxy)/config.yaml" --v=1
}

# /healthz answers 200 once the rules have been synced since start.
kube_proxy_healthy() { curl -fsS --max-time 3 "http://127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT/healthz" >/dev/null; }
kube_proxy_wait() { wait_for kube-proxy "${KUBE_PROXY_START_TIMEOUT:-60}" kube_proxy_healthy; }
kube_proxy_bootstrap() { :; }

# Its rules stay in place after it stops (as on a real node); the next start resyncs them.
kube_proxy_stop() { stop_process kube-proxy 30; }
