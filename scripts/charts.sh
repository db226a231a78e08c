#!/usr/bin/env bash
# scripts/charts.sh deps|lint|all - the Helm charts under charts/, with the local stack's
# pinned helm (devstack/k8s/helm.sh, built by `make stack-up`) when it exists, else the
# `helm` on PATH (kind users; skaffold.yaml runs `deps` before deploying).
#   deps  package each chart's sibling dependencies into its charts/ (helm dependency update),
#         library first, umbrella last
#   lint  helm lint --strict every chart (the umbrella also with values-kind.yaml)
set -euo pipefail
cd "$(dirname "$0")/.."
if bash devstack/k8s/helm.sh version >/dev/null 2>&1; then
  helm() { bash devstack/k8s/helm.sh "$@"; }
fi

COMPONENTS=(operator ingest bridge processor sink simulator monitoring)

deps() {
  local c
  for c in "${COMPONENTS[@]}" ""; do
    helm dependency update "charts/devicefleet${c:+-$c}" >/dev/null
  done
}

lint() {
  local c
  for c in lib "${COMPONENTS[@]}"; do
    helm lint --strict --quiet "charts/devicefleet-$c"
  done
  helm lint --strict --quiet charts/devicefleet
  helm lint --strict --quiet charts/devicefleet -f charts/devicefleet/values-kind.yaml
}

case "${1:-all}" in
  deps) deps ;;
  lint) lint ;;
  all) deps && lint ;;
  *) echo "usage: $0 deps|lint|all" >&2; exit 2 ;;
esac
