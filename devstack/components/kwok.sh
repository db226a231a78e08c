# shellcheck shell=bash
# devstack component: kwok (sigs.k8s.io/kwok) simulating KWOK_NODES fake
# nodes and their pods against the local kube-apiserver (out-of-cluster,
# admin kubeconfig). Fake pod IPs come from KWOK_POD_CIDR (127.128.0.0/16)
# and node IPs are 127.0.0.1, so nothing ever points off the host.
# Sourced by devstack scripts after lib.sh.

# shellcheck source=SCRIPTDIR/../k8s/lib.sh
source "$DEVSTACK_DIR/k8s/lib.sh"

KWOK_NODES="${KWOK_NODES:-2}"
# Nodes kwok manages (label) and the taint pods must tolerate to land there.
KWOK_NODE_SELECTOR=type=kwok
KWOK_TAINT_KEY=kwok.x-k8s.io/node

kwok_ports() { echo "$KWOK_PORT"; }
kwok_address() { echo "http://127.0.0.1:$KWOK_PORT ($KWOK_NODES nodes)"; }

KWOK_STAGES_DIR="$(dirname "$KWOK_BIN_DIR")/stages"
# kwok >= 0.7 has no built-in lifecycle: it refuses to start without Stage
# objects. These are the release's "fast" set (kustomize/stage/fast):
# nodes become Ready at once and renew a Lease, pods go Running at once.
KWOK_STAGES=(node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
  pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml)

kwok_installed() {
  local f
  [[ -x "$KWOK_BIN_DIR/kwok" ]] &&
    _k8s_marker_ok "$(dirname "$KWOK_BIN_DIR")" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" || return 1
  for f in "${KWOK_STAGES[@]}"; do [[ -s "$KWOK_STAGES_DIR/$(basename "$f")" ]] || return 1; done
}

kwok_install() {
  local dir f
  k8s_go_install kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION" "$KWOK_BIN_DIR" \
    "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
  # The stage files of the same release, from its module source.
  dir="$(k8s_go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" |
    sed -nE 's/^[[:space:]]*"Dir": "(.*)",?$/\1/p')"
  [[ -d "$dir/kustomize/stage" ]] || die "kwok: no kustomize/stage in sigs.k8s.io/kwok@$KWOK_VERSION"
  mkdir -p "$KWOK_STAGES_DIR"
  for f in "${KWOK_STAGES[@]}"; do
    install -m 644 "$dir/kustomize/stage/$f" "$KWOK_STAGES_DIR/$(basename "$f")"
  done
}

kwok_start() {
  local conf f
  conf="$(conf_dir kwok)"
  mkdir -p "$conf"
  # An explicit --config keeps kwok from reading ~/.kwok/kwok.yaml. It holds
  # only the stages: a KwokConfiguration document there replaces kwok's
  # defaults wholesale (unset fields become 0 and kwok refuses to start),
  # so the options are flags.
  {
    for f in "${KWOK_STAGES[@]}"; do
      printf -- '---\n'
      cat "$KWOK_STAGES_DIR/$(basename "$f")"
    done
  } >"$conf/kwok.yaml.tmp"
  mv -f "$conf/kwok.yaml.tmp" "$conf/kwok.yaml"
  k8s_require kube-apiserver
  start_process kwok "$(log_file kwok)" "$KWOK_BIN_DIR/kwok" \
    --config="$conf/kwok.yaml" \
    --kubeconfig="$KUBECONFIG_ADMIN" \
    --cidr="$KWOK_POD_CIDR" \
    --node-ip=127.0.0.1 \
    --server-address="127.0.0.1:$KWOK_PORT" \
    --manage-all-nodes=false \
    --manage-nodes-with-label-selector="$KWOK_NODE_SELECTOR" \
    --node-lease-duration-seconds=40
  # Node leases are the heartbeat kube-controller-manager watches (the
  # "heartbeat-with-lease" stage only refreshes node status every ~10 min).
  # Without them the nodes look dead after 40 s and their pods are marked
  # NotReady.
}

_kwok_server_ok() { [[ "$(curl -fsS --max-time 3 "http://127.0.0.1:$KWOK_PORT/healthz")" == ok ]]; }

# _kwok_nodes_ready: at least KWOK_NODES kwok nodes, all Ready.
_kwok_nodes_ready() {
  local out total ready
  out="$(kubectl_admin get nodes -l "$KWOK_NODE_SELECTOR" \
    -o 'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}')" || return 1
  total="$(grep -c . <<<"$out")"
  ready="$(grep -c '^True$' <<<"$out")"
  ((total >= KWOK_NODES && ready == total))
}

kwok_healthy() { _kwok_server_ok && _kwok_nodes_ready; }

# Only the server here: the nodes are created by kwok_bootstrap.
kwok_wait() { wait_for kwok "${KWOK_START_TIMEOUT:-60}" _kwok_server_ok; }

# _kwok_node_manifest I: one fake node. kwok fills in its status (Ready,
# capacity, addresses); the taint keeps pods off unless they tolerate it.
_kwok_node_manifest() {
  cat <<YAML
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$1
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    devicefleet.io/node-kind: kwok
    kubernetes.io/hostname: kwok-node-$1
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    kubernetes.io/role: agent
    node-role.kubernetes.io/agent: ""
spec:
  taints:
  - key: $KWOK_TAINT_KEY
    value: fake
    effect: NoSchedule
YAML
}

# Creates/updates kwok-node-0..N-1 (server-side apply, idempotent) and waits
# until they are Ready. Extra nodes from a larger earlier KWOK_NODES stay.
kwok_bootstrap() {
  local i
  for ((i = 0; i < KWOK_NODES; i++)); do
    _kwok_node_manifest "$i"
    printf -- '---\n'
  done | kubectl_admin apply --server-side --field-manager=devstack -f - >/dev/null ||
    die "kwok: could not create the fake nodes"
  wait_for kwok "${KWOK_START_TIMEOUT:-60}" _kwok_nodes_ready
}

kwok_stop() { stop_process kwok 30; }
