# shellcheck shell=bash
# devstack component: etcd (single member) for the local Kubernetes control
# plane, built from go.etcd.io/etcd/server/v3 at the version Kubernetes
# K8S_VERSION requires. TLS with client-cert auth on the client port (own
# etcd CA, see k8s/pki.sh), data in $DEVSTACK_STATE/data/etcd.
# Sourced by devstack scripts after lib.sh.

# shellcheck source=SCRIPTDIR/../k8s/lib.sh
source "$DEVSTACK_DIR/k8s/lib.sh"

etcd_ports() { echo "$ETCD_CLIENT_PORT $ETCD_PEER_PORT"; }
etcd_address() { echo "https://127.0.0.1:$ETCD_CLIENT_PORT (peer :$ETCD_PEER_PORT)"; }

etcd_installed() {
  [[ -x "$ETCD_BIN_DIR/etcd" ]] && _k8s_marker_ok "$(dirname "$ETCD_BIN_DIR")" \
    "go.etcd.io/etcd/server/v3@$ETCD_VERSION" && command -v curl >/dev/null
}

# The server module's main package is the etcd binary. Its go.mod replaces
# etcd's sibling modules with local paths, so `go install ...@version` is
# refused; it is built from a scratch module like Kubernetes (k8s/lib.sh).
etcd_install() {
  local home t0=$SECONDS
  home="$(dirname "$ETCD_BIN_DIR")"
  command -v curl >/dev/null || apt_install curl
  rm -f "$home/.installed"
  k8s_go_build_scratch etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "$ETCD_VERSION" \
    "$ETCD_BIN_DIR" "-s -w" go.etcd.io/etcd/server/v3
  printf '%s\n' "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >"$home/.installed"
  log "etcd: built in $((SECONDS - t0))s"
}

etcd_start() {
  local data
  data="$(data_dir etcd)"
  # Services keep the ClusterIPs they were given: a cluster made with another service range
  # (this stack used 127.96.0.0/24 before it had a real node) cannot be moved, so it is
  # started afresh.
  if [[ -d "$data/member" && "$(cat "$data/.service-cidr" 2>/dev/null)" != "$KUBE_SERVICE_CIDR" ]]; then
    warn "etcd: the cluster was made with another service range; starting with an empty cluster"
    rm -rf "$data"
  fi
  mkdir -p "$data"
  printf '%s\n' "$KUBE_SERVICE_CIDR" >"$data/.service-cidr"
  chmod 700 "$data"
  k8s_ensure_pki
  # Peer URL is plain http on loopback: a single member never talks to peers.
  start_process etcd "$(log_file etcd)" "$ETCD_BIN_DIR/etcd" \
    --name devicefleet \
    --data-dir "$data" \
    --listen-client-urls "https://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls "https://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "devicefleet=http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster-state new \
    --cert-file "$K8S_PKI/etcd/server.crt" \
    --key-file "$K8S_PKI/etcd/server.key" \
    --trusted-ca-file "$K8S_PKI/etcd/ca.crt" \
    --client-cert-auth \
    --snapshot-count 10000 \
    --log-level warn
}

# /health as the apiserver's etcd client: proves TLS, client auth and a
# quorum read (it answers "false" without a leader).
etcd_healthy() {
  curl -fsS --max-time 3 --cacert "$K8S_PKI/etcd/ca.crt" \
    --cert "$K8S_PKI/apiserver-etcd-client.crt" --key "$K8S_PKI/apiserver-etcd-client.key" \
    "https://127.0.0.1:$ETCD_CLIENT_PORT/health" | grep -q '"health":"true"'
}

etcd_wait() { wait_for etcd "${ETCD_START_TIMEOUT:-60}" etcd_healthy; }

etcd_bootstrap() { :; }

etcd_stop() { stop_process etcd 30; }
