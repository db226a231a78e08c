# shellcheck shell=bash
# devstack component: containerd (with runc and the CNI plugins, all from Debian) as the real
# node's container runtime. Our own instance: config, root, state and socket under the devstack
# dirs, so a system containerd (if any) is left alone. Pods join the bridge network described
# in k8s/node.sh. Sourced by devstack scripts after lib.sh.

# shellcheck source=SCRIPTDIR/../k8s/lib.sh
source "$DEVSTACK_DIR/k8s/lib.sh"
# shellcheck source=SCRIPTDIR/../k8s/node.sh
source "$DEVSTACK_DIR/k8s/node.sh"

containerd_ports() { :; }
containerd_address() { echo "unix://$NODE_CONTAINERD_SOCKET"; }

CONTAINERD_PACKAGES=(containerd runc containernetworking-plugins iptables conntrack)

containerd_installed() {
  local p
  for p in "${CONTAINERD_PACKAGES[@]}"; do pkg_installed "$p" || return 1; done
}

containerd_install() {
  apt_install "${CONTAINERD_PACKAGES[@]}"
  # Debian enables its own containerd service; ours runs from devstack.
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
    systemctl disable --now containerd >/dev/null 2>&1 || true
  fi
}

# ctr_node ARGS...: ctr against our containerd, in the namespace kubelet's pods use.
ctr_node() { ctr --address "$NODE_CONTAINERD_SOCKET" --namespace k8s.io "$@"; }

containerd_configure() {
  local conf
  conf="$(conf_dir containerd)"
  mkdir -p "$conf" "$NODE_CNI_CONF_DIR" "$(data_dir containerd)" "$DEVSTACK_RUN/containerd"
  node_cni_conf >"$NODE_CNI_CONF_DIR/10-devicefleet.conflist"
  # Config version 2 (containerd 1.6/1.7). cgroupfs driver: no systemd here, and kubelet is
  # told the same (cgroupDriver: cgroupfs). Images come only from the local import
  # (devstack/images); there is no registry to pull from.
  cat >"$conf/config.toml" <<TOML
version = 2
root = "$(data_dir containerd)/root"
state = "$DEVSTACK_RUN/containerd/state"

[grpc]
  address = "$NODE_CONTAINERD_SOCKET"

[ttrpc]
  address = "$DEVSTACK_RUN/containerd/containerd.sock.ttrpc"

[debug]
  address = "$DEVSTACK_RUN/containerd/debug.sock"

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$NODE_PAUSE_IMAGE"
  enable_selinux = false
  disable_apparmor = true
  # Never ask for an OOM score below containerd's own: lowering it needs CAP_SYS_RESOURCE,
  # which some machines (containers, sandboxed VMs) do not grant even to root; runc would fail
  # every pod with "can't get final child's PID from pipe" (it cannot write -998).
  restrict_oom_score_adj = true
  max_container_log_line_size = 16384

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "$NODE_CNI_BIN_DIR"
  conf_dir = "$NODE_CNI_CONF_DIR"
  max_conf_num = 1
TOML
}

containerd_start() {
  node_network_ensure
  containerd_configure
  start_process containerd "$(log_file containerd)" containerd --config "$(conf_dir containerd)/config.toml"
}

containerd_healthy() { ctr_node version >/dev/null 2>&1; }
containerd_wait() { wait_for containerd "${CONTAINERD_START_TIMEOUT:-60}" containerd_healthy; }

# The sandbox image must be there before kubelet creates a pod (nothing can pull it).
containerd_bootstrap() {
  "$DEVSTACK_DIR/images/build.sh" import pause >/dev/null ||
    die "containerd: could not build/import the pause image $NODE_PAUSE_IMAGE (devstack/images/build.sh)"
}

# Containers outlive kubelet and containerd (each has its own shim), as on a real node. `down`
# should leave nothing running, so the pods' tasks are killed first; at the next start kubelet
# sees their sandboxes dead and recreates the pods (CNI DEL frees their addresses).
containerd_stop() {
  local task
  if containerd_healthy; then
    for task in $(ctr_node tasks ls -q 2>/dev/null); do
      ctr_node tasks kill --signal SIGKILL "$task" >/dev/null 2>&1 || true
    done
    for task in $(ctr_node tasks ls -q 2>/dev/null); do
      ctr_node tasks delete --force "$task" >/dev/null 2>&1 || true
    done
  fi
  stop_process containerd 30
  node_release_mounts
}
