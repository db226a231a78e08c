# shellcheck shell=bash
# devstack component: kube-scheduler of the local Kubernetes control plane
# (K8S_VERSION, built with kube-apiserver, see k8s/lib.sh). Secure port
# 127.0.0.1:KUBE_SCHEDULER_PORT (/healthz, /metrics).
# Sourced by devstack scripts after lib.sh.

# shellcheck source=SCRIPTDIR/../k8s/lib.sh
source "$DEVSTACK_DIR/k8s/lib.sh"

kube_scheduler_ports() { echo "$KUBE_SCHEDULER_PORT"; }
kube_scheduler_address() { echo "https://127.0.0.1:$KUBE_SCHEDULER_PORT"; }
kube_scheduler_installed() { k8s_kubernetes_installed; }
kube_scheduler_install() { k8s_build_kubernetes; }

kube_scheduler_start() {
  local conf kc
  k8s_ensure_pki
  k8s_ensure_kubeconfigs
  conf="$(conf_dir kube-scheduler)"
  kc="$conf/kubeconfig"
  # Client QPS lives in the config file (the --kube-api-qps flag is ignored
  # once --config is given). No leader election: see kube-controller-manager.
  cat >"$conf/config.yaml.tmp" <<YAML
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: $kc
  qps: ${KUBE_API_QPS:-500}
  burst: ${KUBE_API_BURST:-1000}
leaderElection:
  leaderElect: false
YAML
  mv -f "$conf/config.yaml.tmp" "$conf/config.yaml"
  k8s_require kube-apiserver
  # Supervised: it exits on purpose when its cache is corrupted (devstack/supervise.sh).
  start_process kube-scheduler "$(log_file kube-scheduler)" \
    bash "$DEVSTACK_DIR/supervise.sh" kube-scheduler "$K8S_BIN_DIR/kube-scheduler" \
    --config="$conf/config.yaml" \
    --bind-address=127.0.0.1 \
    --secure-port="$KUBE_SCHEDULER_PORT" \
    --tls-cert-file="$K8S_PKI/kube-scheduler-server.crt" \
    --tls-private-key-file="$K8S_PKI/kube-scheduler-server.key" \
    --authentication-kubeconfig="$kc" \
    --authorization-kubeconfig="$kc" \
    --client-ca-file="$K8S_PKI/ca.crt" \
    --requestheader-client-ca-file="$K8S_PKI/front-proxy-ca.crt" \
    --profiling=false
}

kube_scheduler_healthy() { k8s_curl_healthz "$KUBE_SCHEDULER_PORT" "$K8S_PKI/ca.crt"; }

kube_scheduler_wait() { wait_for kube-scheduler "${KUBE_SCHEDULER_START_TIMEOUT:-60}" kube_scheduler_healthy; }

kube_scheduler_bootstrap() { :; }

kube_scheduler_stop() { stop_process kube-scheduler 30; }
