#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# devstack/k8s/kubectl.sh ARGS... - the pinned kubectl (built by
# `devstack/install.sh kube-apiserver`) as cluster admin against the local
# control plane: KUBECONFIG defaults to $DEVSTACK_STATE/kubeconfig.
#   devstack/k8s/kubectl.sh get nodes -o wide
set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=lib.sh
source "$DEVSTACK_DIR/k8s/lib.sh"
k8s_kubernetes_installed || die "kubectl is not built; run devstack/install.sh kube-apiserver"
KUBECONFIG="${KUBECONFIG:-$KUBECONFIG_ADMIN}" exec "$K8S_BIN_DIR/kubectl" "$@"
