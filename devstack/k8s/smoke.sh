#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# devstack/k8s/smoke.sh [--scale N] - prove the local control plane works
# (run after `devstack/up.sh etcd kube-apiserver kube-controller-manager
# kube-scheduler kwok`):
#   versions   kubectl/server/helm report the pinned versions
#   nodes      the kwok nodes are Ready
#   deploy     3 replicas tolerating the kwok taint run on kwok nodes with
#              127.x pod IPs
#   gc         deleting the Deployment garbage-collects its ReplicaSet and
#              pods; deleting the namespace removes everything in it
#   crd        a CRD is served, a valid custom object is accepted and an
#              invalid one is rejected by server-side schema validation
#   scale      (--scale N) N pods via one Deployment, time until all Running
# Uses namespaces devstack-smoke*, deleted again at the end. Exit 0 = all passed.
set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=lib.sh
source "$DEVSTACK_DIR/k8s/lib.sh"

scale=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --scale) scale="$2"; shift 2 ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
done

k() { "$K8S_BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
pass() { printf 'smoke: PASS %s\n' "$*"; }
fail() { printf 'smoke: FAIL %s\n' "$*" >&2; exit 1; }

# deployment NS NAME REPLICAS: pause-like pods pinned to kwok nodes (the
# image is never pulled: kwok only fakes the pod lifecycle).
deployment() {
  cat <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: $2, namespace: $1}
spec:
  replicas: $3
  selector: {matchLabels: {app: $2}}
  template:
    metadata: {labels: {app: $2}}
    spec:
      nodeSelector: {type: kwok}
      tolerations:
      - {key: kwok.x-k8s.io/node, operator: Exists, effect: NoSchedule}
      containers:
      - {name: app, image: registry.k8s.io/pause:3.10}
YAML
}

# running_count NS SELECTOR: pods in phase Running.
running_count() {
  k get pods -n "$1" -l "$2" --field-selector=status.phase=Running --no-headers 2>/dev/null | wc -l
}

check_versions() {
  local client server helm_v
  client="$(k version -o json | sed -nE 's/.*"gitVersion": "([^"]+)".*/\1/p' | head -n1)"
  server="$(k get --raw /version | sed -nE 's/.*"gitVersion": "([^"]+)".*/\1/p')"
  helm_v="$("$HELM_BIN_DIR/helm" version --template '{{.Version}}')"
  [[ "$client" == "$K8S_VERSION" && "$server" == "$K8S_VERSION" ]] ||
    fail "versions: kubectl $client, server $server, want $K8S_VERSION"
  [[ "$helm_v" == "$HELM_VERSION" ]] || fail "versions: helm $helm_v, want $HELM_VERSION"
  pass "versions: kubectl $client, apiserver $server, helm $helm_v"
}

check_nodes() {
  k get nodes -l type=kwok -o wide
  k wait --for=condition=Ready node -l type=kwok --timeout=60s >/dev/null || fail "nodes: kwok nodes not Ready"
  pass "nodes: $(k get nodes -l type=kwok --no-headers | wc -l) kwok nodes Ready"
}

check_deploy() {
  local ns=devstack-smoke bad
  k create namespace "$ns" --dry-run=client -o yaml | k apply -f - >/dev/null
  deployment "$ns" web 3 | k apply -f - >/dev/null
  k rollout status -n "$ns" deploy/web --timeout=90s >/dev/null || fail "deploy: rollout did not finish"
  k get pods -n "$ns" -o wide
  bad="$(k get pods -n "$ns" -l app=web \
    -o 'jsonpath={range .items[*]}{.status.phase} {.spec.nodeName} {.status.podIP}{"\n"}{end}' |
    grep -vcE '^Running kwok-node-[0-9]+ 127\.' || true)"
  [[ "$bad" == 0 && "$(running_count "$ns" app=web)" == 3 ]] ||
    fail "deploy: pods not all Running on kwok nodes with 127.x IPs"
  pass "deploy: 3/3 Running on kwok nodes, pod IPs in 127.0.0.0/8"
}

# wait_gone SECONDS CMD...: until CMD prints nothing.
wait_gone() {
  local deadline=$((SECONDS + $1))
  shift
  while [[ -n "$("$@" 2>/dev/null)" ]]; do
    ((SECONDS < deadline)) || return 1
    sleep 1
  done
}

check_gc() {
  local ns=devstack-smoke
  k delete -n "$ns" deploy/web --cascade=background --wait=false >/dev/null
  wait_gone 60 k get rs,pods -n "$ns" -l app=web -o name || fail "gc: ReplicaSet/pods of a deleted Deployment remain"
  pass "gc: Deployment delete collected its ReplicaSet and pods"
  deployment "$ns" web2 2 | k apply -f - >/dev/null
  k create configmap -n "$ns" cm --from-literal=a=b >/dev/null
  k rollout status -n "$ns" deploy/web2 --timeout=60s >/dev/null
  k delete namespace "$ns" --wait=false >/dev/null
  wait_gone 90 k get namespace "$ns" -o name || fail "gc: namespace $ns not deleted within 90s"
  pass "gc: namespace delete removed the Deployment, pods and ConfigMap"
}

check_crd() {
  local ns=devstack-smoke-crd out
  k apply -f - >/dev/null <<'YAML'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.smoke.devicefleet.io}
spec:
  group: smoke.devicefleet.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
YAML
  k wait --for=condition=Established crd/widgets.smoke.devicefleet.io --timeout=30s >/dev/null
  k create namespace "$ns" --dry-run=client -o yaml | k apply -f - >/dev/null
  printf 'apiVersion: smoke.devicefleet.io/v1\nkind: Widget\nmetadata: {name: ok, namespace: %s}\nspec: {size: 3}\n' "$ns" |
    k apply -f - >/dev/null || fail "crd: valid Widget rejected"
  if out="$(printf 'apiVersion: smoke.devicefleet.io/v1\nkind: Widget\nmetadata: {name: bad, namespace: %s}\nspec: {size: 0}\n' "$ns" |
    k apply --validate=false -f - 2>&1)"; then
    fail "crd: invalid Widget (size 0) was accepted"
  fi
  grep -q 'should be greater than or equal to 1' <<<"$out" || fail "crd: unexpected error: $out"
  pass "crd: Widget created; size=0 rejected by the apiserver ($(grep -o 'spec.size: Invalid value.*' <<<"$out" | head -n1))"
  k delete namespace "$ns" --wait=true --timeout=60s >/dev/null
  k delete crd widgets.smoke.devicefleet.io >/dev/null
}

check_scale() {
  local n="$1" ns=devstack-smoke-scale t0 running=0 deadline
  k create namespace "$ns" --dry-run=client -o yaml | k apply -f - >/dev/null
  t0=$SECONDS
  deployment "$ns" scale "$n" | k apply -f - >/dev/null
  deadline=$((SECONDS + ${SMOKE_SCALE_TIMEOUT:-900}))
  while ((running < n)); do
    ((SECONDS < deadline)) || fail "scale: only $running/$n Running after $((SECONDS - t0))s"
    sleep 2
    running="$(running_count "$ns" app=scale)"
    printf 'smoke: scale: %s/%s Running after %ss\n' "$running" "$n" "$((SECONDS - t0))"
  done
  pass "scale: $n/$n pods Running in $((SECONDS - t0))s"
  t0=$SECONDS
  k delete namespace "$ns" --wait=true --timeout=600s >/dev/null
  pass "scale: namespace with $n pods deleted in $((SECONDS - t0))s"
}

check_versions
check_nodes
check_deploy
check_gc
check_crd
if ((scale > 0)); then check_scale "$scale"; fi
printf 'smoke: all checks passed\n'
