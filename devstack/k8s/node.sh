# shellcheck shell=bash
# devstack/k8s/node.sh - the real node's host side: root check, cgroup mode, the pod bridge,
# sysctls, the firewall rules that keep pod traffic on this machine, and the CNI config.
# Sourced by components/{containerd,kubelet,kube-proxy}.sh after k8s/lib.sh; loads once.
#
# Network picture (addresses from k8s/ports.env):
#   NODE_BRIDGE (dfbr0) NODE_IP/24    the node's InternalIP and every pod's gateway
#   pods            NODE_POD_CIDR     one veth each, on the bridge (CNI bridge + host-local)
#   Services        KUBE_SERVICE_CIDR routed to the bridge; kube-proxy DNATs them
# The chain DEVICEFLEET-EGRESS (mangle FORWARD) drops whatever a pod sends that is not for another pod
# on the bridge; traffic to the host itself (NODE_IP, the apiserver) is local delivery, not
# forwarding. DEVICEFLEET-INPUT (mangle INPUT) keeps the apiserver, which must listen beyond loopback
# so pods can reach it, closed to every interface but lo and the bridge.

if [[ -n "${_DEVSTACK_NODE_LIB_LOADED:-}" ]]; then
  return 0
fi
_DEVSTACK_NODE_LIB_LOADED=1

# Used by the component files, hence the directive.
# shellcheck disable=SC2034
{
  NODE_CONTAINERD_SOCKET="$DEVSTACK_RUN/containerd/containerd.sock"
  NODE_CNI_CONF_DIR="$DEVSTACK_CONF/containerd/cni"
  # Debian's containernetworking-plugins install here.
  NODE_CNI_BIN_DIR=/usr/lib/cni
  NODE_LABEL_KEY=devicefleet.io/node-kind
  NODE_EGRESS_CHAIN=DEVICEFLEET-EGRESS
  NODE_INPUT_CHAIN=DEVICEFLEET-INPUT
  # The sandbox ("pause") image every pod starts with; built locally (devstack/images).
  NODE_PAUSE_IMAGE=localhost/devicefleet/pause:3.10
}

# node_supported: the real node needs root (network namespaces, iptables, mounts), the way
# kind needs a Docker engine. Prints why not and fails otherwise.
node_supported() {
  if [[ "$(id -u)" -ne 0 ]]; then
    echo "the real node needs root (pod network namespaces, iptables, cgroups); run as root or use kwok only (DEVSTACK_NODE=off)"
    return 1
  fi
  if [[ ! -d /sys/fs/cgroup ]]; then
    echo "no /sys/fs/cgroup: cgroups are not mounted"
    return 1
  fi
}

node_require() {
  local why
  why="$(node_supported)" || die "real node: $why"
}

# node_cgroup_mode: v2 (unified), or v1 (legacy or hybrid: v1 controllers, maybe a
# cgroup2 hierarchy beside them), the way runc and kubelet tell them apart.
node_cgroup_mode() {
  if [[ "$(stat -fc %T /sys/fs/cgroup)" == cgroup2fs ]]; then echo v2; else echo v1; fi
}

# _node_cgroup_v1_mounts: kubelet's v1 cgroup manager wants every controller the kernel has
# mounted as a hierarchy; some images (this one) leave hugetlb out. Mount what is missing.
_node_cgroup_v1_mounts() {
  # Enabled in the kernel (last column of /proc/cgroups) but not mounted.
  grep -qE '^hugetlb[[:space:]].*[[:space:]]1$' /proc/cgroups || return 0
  mountpoint -q /sys/fs/cgroup/hugetlb && return 0
  log "node: mounting the cgroup v1 hugetlb controller at /sys/fs/cgroup/hugetlb"
  mkdir -p /sys/fs/cgroup/hugetlb
  mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb ||
    warn "node: could not mount the hugetlb cgroup controller"
}

_node_sysctl() {
  local key="$1" want="$2" path
  path="/proc/sys/${key//.//}"
  [[ "$(cat "$path" 2>/dev/null)" == "$want" ]] && return 0
  printf '%s' "$want" >"$path" || die "node: cannot set $key=$want"
}

# _node_chain_rules FAMILY: the mangle-table rules of our two chains, in iptables-restore form
# (":CHAIN - [0:0]" empties CHAIN; the rules after it refill it).
_node_chain_rules() {
  local port
  printf '*mangle\n:%s - [0:0]\n:%s - [0:0]\n' "$NODE_EGRESS_CHAIN" "$NODE_INPUT_CHAIN"
  # Pod to pod (also after a Service DNAT to another pod): stays on the bridge. Anything else
  # a pod would send through this machine is dropped, and nothing from elsewhere is forwarded
  # into the pod network.
  cat <<RULES
-A $NODE_EGRESS_CHAIN -i $NODE_BRIDGE -o $NODE_BRIDGE -j RETURN
-A $NODE_EGRESS_CHAIN -i $NODE_BRIDGE -m comment --comment "devicefleet: pods never reach beyond this machine" -j DROP
-A $NODE_EGRESS_CHAIN -o $NODE_BRIDGE -m comment --comment "devicefleet: the pod network is not reachable from outside" -j DROP
RULES
  for port in "$KUBE_APISERVER_PORT" "$KUBELET_PORT"; do
    cat <<RULES
-A $NODE_INPUT_CHAIN -i lo -p tcp -m tcp --dport $port -j RETURN
-A $NODE_INPUT_CHAIN -i $NODE_BRIDGE -p tcp -m tcp --dport $port -j RETURN
-A $NODE_INPUT_CHAIN -p tcp -m tcp --dport $port -m comment --comment "devicefleet: control plane only on loopback and the pod bridge" -j DROP
RULES
  done
  printf 'COMMIT\n'
}

# node_firewall_ensure: the two chains described at the top, in IPv4 and IPv6 (the machine has
# both; the pod network is IPv4 only). They live in the mangle table, which packets traverse
# before the filter table where kube-proxy and kubelet insert their own (ACCEPT) rules at the
# top: whatever those add, ours decide first. Each start rewrites them in one iptables-restore
# transaction, so there is never a moment without the DROP rules (the apiserver and pods may
# already be running). Idempotent.
node_firewall_ensure() {
  local ipt chain parent
  for ipt in iptables ip6tables; do
    _node_chain_rules | "$ipt-restore" -w 5 --noflush ||
      die "node: $ipt-restore could not install the $NODE_EGRESS_CHAIN/$NODE_INPUT_CHAIN rules"
    for chain in "$NODE_EGRESS_CHAIN:FORWARD" "$NODE_INPUT_CHAIN:INPUT"; do
      parent="${chain#*:}"
      chain="${chain%%:*}"
      "$ipt" -w 5 -t mangle -C "$parent" -j "$chain" 2>/dev/null ||
        "$ipt" -w 5 -t mangle -I "$parent" 1 -j "$chain"
    done
  done
}

# node_network_ensure: bridge with NODE_IP, forwarding and bridge netfilter on (kube-proxy's
# Service rules must see bridged pod-to-pod traffic), the Service range routed to the bridge,
# and the firewall. Idempotent.
node_network_ensure() {
  node_require
  command -v iptables >/dev/null || apt_install iptables
  if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    log "node: creating bridge $NODE_BRIDGE ($NODE_IP, pods $NODE_POD_CIDR)"
    ip link add "$NODE_BRIDGE" type bridge
  fi
  ip addr replace "$NODE_IP/${NODE_POD_CIDR#*/}" dev "$NODE_BRIDGE"
  # IPv4 only: no IPv6 addresses (not even link-local) on the pod network.
  _node_sysctl "net.ipv6.conf.$NODE_BRIDGE.disable_ipv6" 1
  ip link set "$NODE_BRIDGE" up
  ip route replace "$KUBE_SERVICE_CIDR" dev "$NODE_BRIDGE" src "$NODE_IP"
  _node_sysctl net.ipv4.ip_forward 1
  _node_sysctl net.bridge.bridge-nf-call-iptables 1
  node_firewall_ensure
  if [[ "$(node_cgroup_mode)" == v1 ]]; then _node_cgroup_v1_mounts; fi
}

# node_cni_conf: the CNI network every pod joins (containerd's CRI plugin reads it): Debian's
# bridge + host-local IPAM on NODE_BRIDGE, portmap for hostPort, loopback for lo.
node_cni_conf() {
  cat <<JSON
{
  "cniVersion": "1.0.0",
  "name": "devicefleet",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$NODE_POD_CIDR", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$DEVSTACK_DATA/containerd/cni-ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
}

# node_diagnose: what `devstack/status.sh` prints about the node's host side and registration,
# so a piece that does not come up names itself.
node_diagnose() {
  local ready
  printf 'node: cgroups %s (%s)\n' "$(node_cgroup_mode)" "$(stat -fc %T /sys/fs/cgroup)"
  if ip -4 addr show "$NODE_BRIDGE" 2>/dev/null | grep -q "inet $NODE_IP/"; then
    printf 'node: bridge %s up with %s\n' "$NODE_BRIDGE" "$NODE_IP"
  else
    printf 'node: bridge %s missing or without %s (started by containerd/kube-apiserver)\n' "$NODE_BRIDGE" "$NODE_IP"
  fi
  if iptables -w 5 -t mangle -C FORWARD -j "$NODE_EGRESS_CHAIN" 2>/dev/null; then
    printf 'node: egress rule %s in place\n' "$NODE_EGRESS_CHAIN"
  else
    printf 'node: egress rule %s MISSING: pod traffic is not confined to this machine\n' "$NODE_EGRESS_CHAIN"
  fi
  ready="$(kubectl_admin get node "$NODE_NAME" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].message}' 2>/dev/null)" ||
    ready="not registered (kubelet log: $(log_file kubelet))"
  printf 'node: %s Ready=%s\n' "$NODE_NAME" "$ready"
}

# node_release_mounts: unmount what kubelet and containerd leave mounted once both are stopped
# (pods' volumes, sandboxes' /dev/shm, kubelet's shared bind mount of its root dir), deepest
# first, so `down.sh --purge` can delete the state and nothing outlives the stack. kubelet
# mounts the volumes again when it restarts the pods.
node_release_mounts() {
  local dir target
  for dir in "$(data_dir kubelet)" "$DEVSTACK_RUN/containerd" "$(data_dir containerd)"; do
    findmnt -rn -o TARGET | awk -v d="$dir" 'index($0, d) == 1' | sort -r |
      while IFS= read -r target; do
        umount -l "$target" 2>/dev/null || warn "node: could not unmount $target"
      done
  done
}
