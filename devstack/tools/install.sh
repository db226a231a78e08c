#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# devstack/tools/install.sh [tool...]    idempotently install the checkers that
#                                         tests/unit/deploy needs (default: all)
# devstack/tools/install.sh --print-path TOOL
#                                         print where TOOL is (installed or not)
#
# Tools (cached under $DEVSTACK_CACHE/tools/<name>-<version>/, ~/.cache/devicefleet
# by default; delete a directory to force a rebuild):
#   deploy-check     devstack/tools/deploy-check: kind's config loader/validation and
#                    BuildKit's Dockerfile parser + `docker build --check` rules, pinned
#                    in its go.mod/go.sum. Built with the local Go through the Go module
#                    proxy (devstack/k8s/lib.sh's k8s_go: same module/build caches as
#                    the Kubernetes builds). Its version is a hash of its sources, so
#                    an edit rebuilds it.
#   skaffold-schema  skaffold's published JSON schema for the apiVersion of
#                    skaffold.yaml, from the skaffold Go module (docs-v2/content/en/schemas/).
set -euo pipefail
TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib.sh
source "$TOOLS_DIR/../lib.sh"
# shellcheck source=../k8s/lib.sh
source "$TOOLS_DIR/../k8s/lib.sh"

TOOLS=(deploy-check skaffold-schema)

# Skaffold release whose schema validates skaffold.yaml (its newest schema version).
SKAFFOLD_MODULE=github.com/GoogleContainerTools/skaffold/v2
SKAFFOLD_VERSION=v2.19.0
SKAFFOLD_SCHEMA=v4beta14
# The module zip's hash (go.sum "h1:" form). sum.golang.org had no entry for this version
# when it was pinned (the proxy answered 404), so go's checksum database is skipped for this
# one module and the download is checked against this pin instead.
SKAFFOLD_ZIP_SUM="h1:qH0CVdT2qAT3PNCfbBXb8Rhb6H5tuWEyQOwK9VaePsE="

DEPLOY_CHECK_SRC="$TOOLS_DIR/deploy-check"

deploy_check_version() {
  cat "$DEPLOY_CHECK_SRC/go.mod" "$DEPLOY_CHECK_SRC/go.sum" "$DEPLOY_CHECK_SRC"/*.go |
    sha256sum | cut -c1-12
}
deploy_check_home() { printf '%s/tools/deploy-check-%s' "$DEVSTACK_CACHE" "$(deploy_check_version)"; }
skaffold_schema_home() { printf '%s/tools/skaffold-schema-%s' "$DEVSTACK_CACHE" "$SKAFFOLD_VERSION"; }

tool_path() {
  case "$1" in
    deploy-check) printf '%s/bin/deploy-check\n' "$(deploy_check_home)" ;;
    skaffold-schema) printf '%s/%s.json\n' "$(skaffold_schema_home)" "$SKAFFOLD_SCHEMA" ;;
    *) die "unknown tool '$1' (known: ${TOOLS[*]})" ;;
  esac
}

install_deploy_check() {
  local home t0=$SECONDS version
  version="$(deploy_check_version)"
  home="$(deploy_check_home)"
  _k8s_marker_ok "$home" "$version" && [[ -x "$home/bin/deploy-check" ]] && return 0
  log "deploy-check: building $version with $(go env GOVERSION) (log: $home/build.log)"
  mkdir -p "$home/bin"
  rm -f "$home/.installed"
  # go.sum is committed and -mod=readonly is go build's default: nothing in the repo changes.
  if ! (cd "$DEPLOY_CHECK_SRC" &&
    k8s_go build -trimpath -ldflags "-s -w" -o "$home/bin/deploy-check" .) >"$home/build.log" 2>&1; then
    tail -n 30 "$home/build.log" >&2
    die "deploy-check: build failed (log: $home/build.log)"
  fi
  printf '%s\n' "$version" >"$home/.installed"
  log "deploy-check: built in $((SECONDS - t0))s"
}

install_skaffold_schema() {
  local home info sum dir t0=$SECONDS
  home="$(skaffold_schema_home)"
  _k8s_marker_ok "$home" "$SKAFFOLD_SCHEMA" && [[ -s "$home/$SKAFFOLD_SCHEMA.json" ]] && return 0
  log "skaffold-schema: downloading $SKAFFOLD_MODULE@$SKAFFOLD_VERSION (Go module proxy, ~45 MB)"
  mkdir -p "$home"
  rm -f "$home/.installed"
  info="$(cd "$home" && GONOSUMDB="$SKAFFOLD_MODULE" k8s_go mod download -json \
    "$SKAFFOLD_MODULE@$SKAFFOLD_VERSION")" || die "skaffold-schema: go mod download failed: $info"
  sum="$(sed -nE 's/^[[:space:]]*"Sum": "(.*)",?$/\1/p' <<<"$info")"
  dir="$(sed -nE 's/^[[:space:]]*"Dir": "(.*)",?$/\1/p' <<<"$info")"
  [[ "$sum" == "$SKAFFOLD_ZIP_SUM" ]] ||
    die "skaffold-schema: $SKAFFOLD_MODULE@$SKAFFOLD_VERSION has hash '$sum', pinned $SKAFFOLD_ZIP_SUM"
  [[ -s "$dir/docs-v2/content/en/schemas/$SKAFFOLD_SCHEMA.json" ]] ||
    die "skaffold-schema: no docs-v2/content/en/schemas/$SKAFFOLD_SCHEMA.json in $dir"
  install -m 644 "$dir/docs-v2/content/en/schemas/$SKAFFOLD_SCHEMA.json" "$home/$SKAFFOLD_SCHEMA.json"
  # Only one file is needed: drop the ~100 MB extracted tree (the zip stays in the module
  # cache, so a re-install does not download again).
  chmod -R u+w "$dir" && rm -rf "$dir"
  printf '%s\n' "$SKAFFOLD_SCHEMA" >"$home/.installed"
  log "skaffold-schema: $SKAFFOLD_SCHEMA.json installed in $((SECONDS - t0))s"
}

if [[ "${1:-}" == "--print-path" ]]; then
  [[ $# -eq 2 ]] || die "usage: $0 --print-path TOOL"
  tool_path "$2"
  exit 0
fi

selected=("$@")
[[ ${#selected[@]} -gt 0 ]] || selected=("${TOOLS[@]}")
for t in "${selected[@]}"; do
  tool_path "$t" >/dev/null # validates the name
done
mkdir -p "$DEVSTACK_CACHE/tools"
for t in "${selected[@]}"; do
  "install_${t//-/_}"
  log "$t: $(tool_path "$t")"
done
