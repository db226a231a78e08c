#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# devstack/k8s/helm.sh ARGS... - the pinned helm (built by
# `devstack/install.sh kube-apiserver`) against the local control plane.
# Helm's config/cache/data dirs go to $DEVSTACK_STATE/helm, not ~/.config.
#   devstack/k8s/helm.sh list -A
set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=lib.sh
source "$DEVSTACK_DIR/k8s/lib.sh"
[[ -x "$HELM_BIN_DIR/helm" ]] || die "helm is not built; run devstack/install.sh kube-apiserver"
export KUBECONFIG="${KUBECONFIG:-$KUBECONFIG_ADMIN}"
export HELM_CONFIG_HOME="${HELM_CONFIG_HOME:-$DEVSTACK_STATE/helm/config}"
export HELM_CACHE_HOME="${HELM_CACHE_HOME:-$DEVSTACK_STATE/helm/cache}"
export HELM_DATA_HOME="${HELM_DATA_HOME:-$DEVSTACK_STATE/helm/data}"
exec "$HELM_BIN_DIR/helm" "$@"
