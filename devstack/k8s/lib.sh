# shellcheck shell=bash
# devstack/k8s/lib.sh - shared helpers for the Kubernetes control plane
# components (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kwok). Sourced by components/*.sh after devstack/lib.sh; loads once.
#
# What it provides
#   Pins      K8S_VERSION (k8s.io/kubernetes tag), ETCD_VERSION, KWOK_VERSION,
#             HELM_VERSION.
#   Ports     every KEY=VALUE of k8s/ports.env exported (K8S_PORTS_FILE).
#   Paths     K8S_BIN_DIR, ETCD_BIN_DIR, KWOK_BIN_DIR, HELM_BIN_DIR (in the
#             cache), K8S_PKI (certs/keys), KUBECONFIG_ADMIN.
#   Builds    k8s_go (go with our caches), k8s_build_kubernetes,
#             k8s_go_install (etcd, kwok, helm).
#   PKI       k8s_ensure_pki, k8s_ensure_kubeconfigs (see pki.sh).
#   Clients   kubectl_admin ARGS... (kubectl with the admin kubeconfig).
#
# Everything is built from source with the local Go toolchain through the
# Go module proxy (no release tarballs: only package registries are
# reachable). Go's module and build caches live in $DEVSTACK_CACHE/go so the
# whole toolchain state is removed by deleting $DEVSTACK_CACHE.

if [[ -n "${_DEVSTACK_K8S_LIB_LOADED:-}" ]]; then
  return 0
fi
_DEVSTACK_K8S_LIB_LOADED=1

K8S_DIR="$DEVSTACK_DIR/k8s"

# --------------------------------------------------------------------------
# Pinned versions. K8S_VERSION is the k8s.io/kubernetes tag; its staging
# modules (k8s.io/api, ...) are tagged v0.<minor>.<patch>. kwok v0.8.0 is
# built against k8s.io/client-go v0.36.x, hence Kubernetes 1.36;
# ETCD_VERSION is the go.etcd.io/etcd/server/v3 version that release's
# go.mod requires.
# --------------------------------------------------------------------------
K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.8
KWOK_VERSION=v0.8.0
HELM_VERSION=v3.22.0
# The monitoring.coreos.com CRDs (ServiceMonitor, PodMonitor, PrometheusRule, ...) a cluster
# with kube-prometheus-stack has; installed so the charts' monitoring objects are validated
# server-side. From the prometheus-operator module's example/prometheus-operator-crd.
PROMETHEUS_OPERATOR_VERSION=v0.85.0

# ports: appended to the keys of ../ports.env (render_template uses both).
K8S_PORTS_FILE="${K8S_PORTS_FILE:-$K8S_DIR/ports.env}"
_k8s_main_keys=("${DEVSTACK_ENV_KEYS[@]}")
load_ports_env "$K8S_PORTS_FILE"
DEVSTACK_ENV_KEYS=("${_k8s_main_keys[@]}" "${DEVSTACK_ENV_KEYS[@]}")
unset _k8s_main_keys

# Used by the component files and scripts, hence the directive.
# shellcheck disable=SC2034
{
  K8S_GO_CACHE="$DEVSTACK_CACHE/go"
  K8S_HOME="$DEVSTACK_CACHE/kubernetes-$K8S_VERSION"
  K8S_BIN_DIR="$K8S_HOME/bin"
  ETCD_BIN_DIR="$DEVSTACK_CACHE/etcd-$ETCD_VERSION/bin"
  KWOK_BIN_DIR="$DEVSTACK_CACHE/kwok-$KWOK_VERSION/bin"
  HELM_BIN_DIR="$DEVSTACK_CACHE/helm-$HELM_VERSION/bin"
  K8S_PKI="$DEVSTACK_STATE/pki"
  KUBECONFIG_ADMIN="$DEVSTACK_STATE/kubeconfig"
  # The binaries that k8s_build_kubernetes builds in one `go build`.
  K8S_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)
}

# --------------------------------------------------------------------------
# prometheus-operator CRDs
# --------------------------------------------------------------------------
# k8s_monitoring_crds_dir: the CRD manifests of PROMETHEUS_OPERATOR_VERSION, downloaded
# (once, into the Go module cache) if needed.
k8s_monitoring_crds_dir() {
  local dir
  dir="$(k8s_go mod download -json \
    "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" |
    sed -nE 's/^[[:space:]]*"Dir": "(.*)",?$/\1/p')"
  [[ -d "$dir/example/prometheus-operator-crd" ]] ||
    die "no example/prometheus-operator-crd in prometheus-operator@$PROMETHEUS_OPERATOR_VERSION"
  echo "$dir/example/prometheus-operator-crd"
}

# --------------------------------------------------------------------------
# Go
# --------------------------------------------------------------------------
# k8s_go ARGS...: the go command with our caches. CGO off (static binaries,
# no C toolchain needed); -p defaults to the number of cores anyway, but
# K8S_GO_P lowers it when memory is tight.
k8s_go() {
  command -v go >/dev/null || die "go is not installed (need Go >= 1.26 for Kubernetes $K8S_VERSION)"
  # GOPATH too: go keeps its checksum-database cache in GOPATH/pkg/sumdb.
  GOPATH="$K8S_GO_CACHE/path" GOMODCACHE="$K8S_GO_CACHE/mod" GOCACHE="$K8S_GO_CACHE/build" CGO_ENABLED=0 \
    GOFLAGS="-buildvcs=false -p=${K8S_GO_P:-$(nproc)}" GOWORK=off go "$@"
}

# _k8s_marker_ok DIR VALUE: DIR/.installed holds VALUE (build finished).
_k8s_marker_ok() { [[ -f "$1/.installed" && "$(cat "$1/.installed")" == "$2" ]]; }

# k8s_go_install NAME PKG VERSION BINDIR LDFLAGS: `go install PKG@VERSION`
# into BINDIR (skipped when BINDIR/../.installed says VERSION). Output goes
# to BINDIR/../build.log.
k8s_go_install() {
  local name="$1" pkg="$2" version="$3" bindir="$4" ldflags="$5" home t0=$SECONDS
  home="$(dirname "$bindir")"
  _k8s_marker_ok "$home" "$pkg@$version" && return 0
  log "$name: building $pkg@$version with $(go env GOVERSION) (log: $home/build.log)"
  mkdir -p "$bindir"
  rm -f "$home/.installed"
  if ! GOBIN="$bindir" k8s_go install -trimpath -ldflags "$ldflags" "$pkg@$version" \
    >"$home/build.log" 2>&1; then
    tail -n 30 "$home/build.log" >&2
    die "$name: go install $pkg@$version failed (log: $home/build.log)"
  fi
  printf '%s\n' "$pkg@$version" >"$home/.installed"
  log "$name: built in $((SECONDS - t0))s"
}

# _k8s_gen_gomod SRC_GOMOD MODULE VERSION SIBLING_VERSION: print the go.mod
# of a scratch main module that requires MODULE@VERSION. Modules such as
# k8s.io/kubernetes and go.etcd.io/etcd/server/v3 cannot be `go install`ed
# directly: their go.mod replaces sibling modules with local paths
# (./staging/src/k8s.io/api, ../api). Each such replace is generated from
# the release's own go.mod and rewritten to the published sibling at
# SIBLING_VERSION (k8s.io/api v0.36.3; etcd: the same tag). Replaces that
# point at non-modules (etcd's ./FORBIDDEN_DEPENDENCY) are dropped. The go
# and godebug lines are copied: godebug only counts in the main module and
# upstream builds with its own go.mod as the main module.
_k8s_gen_gomod() {
  local src="$1" module="$2" version="$3" sibling_version="$4"
  printf 'module devicefleet.local/scratch-build\n\n'
  grep -E '^(go|godebug) ' "$src"
  printf '\nrequire %s %s\n\nreplace (\n' "$module" "$version"
  # Both forms: inside a replace ( ... ) block and one-line replace X => Y.
  sed -nE -e '/^replace \(/,/^\)/p' -e '/^replace [^(]/s/^replace //p' "$src" |
    grep -v FORBIDDEN |
    sed -nE "s#^[[:space:]]*([A-Za-z0-9./_-]+) => \.\.?/.*#\t\1 => \1 $sibling_version#p"
  printf ')\n'
}

# k8s_go_build_scratch NAME MODULE VERSION SIBLING_VERSION BINDIR LDFLAGS PKG...
#   Download MODULE@VERSION, generate a scratch module for it in
#   BINDIR/../src (see _k8s_gen_gomod; never in the repo), and build all
#   PKGs with ONE `go build` (shared packages compile once) into BINDIR. A
#   single PKG is named NAME. Output: BINDIR/../build.log. Sets K8S_MOD_INFO
#   to `go mod download -json` output (for version stamping).
k8s_go_build_scratch() {
  local name="$1" module="$2" version="$3" sibling="$4" bindir="$5" ldflags="$6" home src gomod out
  shift 6
  home="$(dirname "$bindir")"
  src="$home/src"
  mkdir -p "$src" "$bindir"
  log "$name: downloading $module@$version (Go module proxy)"
  K8S_MOD_INFO="$(cd "$src" && k8s_go mod download -json "$module@$version")" ||
    die "$name: go mod download $module@$version failed"
  gomod="$(sed -nE 's/^[[:space:]]*"GoMod": "(.*)",?$/\1/p' <<<"$K8S_MOD_INFO")"
  [[ -r "$gomod" ]] || die "$name: no go.mod in the download of $module@$version"
  _k8s_gen_gomod "$gomod" "$module" "$version" "$sibling" >"$src/go.mod"
  out="$bindir/"
  if [[ $# -eq 1 ]]; then out="$bindir/$name"; fi
  # `go get PKG@VERSION` records every module the packages need in go.mod
  # and go.sum (pruned module graphs want them listed in the main module).
  if ! (cd "$src" && k8s_go get "${@/%/@$version}" &&
    k8s_go build -trimpath -ldflags "$ldflags" -o "$out" "$@") >"$home/build.log" 2>&1; then
    tail -n 30 "$home/build.log" >&2
    die "$name: build failed (log: $home/build.log)"
  fi
}

# _k8s_ldflags COMMIT DATE: version stamping as hack/lib/version.sh does it,
# so `kubectl version` and /version report the real release.
_k8s_ldflags() {
  local minor="${K8S_VERSION#v1.}" pkg flags="-s -w" commit="$1" date="$2"
  minor="${minor%%.*}"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitCommit=$commit -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
  done
  printf '%s' "$flags"
}

k8s_kubernetes_installed() {
  local c
  _k8s_marker_ok "$K8S_HOME" "$K8S_VERSION" || return 1
  for c in "${K8S_COMMANDS[@]}"; do [[ -x "$K8S_BIN_DIR/$c" ]] || return 1; done
}

# k8s_build_kubernetes: K8S_COMMANDS from k8s.io/kubernetes@K8S_VERSION
# (staging modules at v0.<minor>.<patch>), version-stamped.
k8s_build_kubernetes() {
  k8s_kubernetes_installed && return 0
  local pkgs=() c t0=$SECONDS commit date info
  rm -f "$K8S_HOME/.installed"
  for c in "${K8S_COMMANDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  # Stamps: the tag's commit if the proxy recorded it (Origin.Hash), the
  # tag's time as build date (reproducible).
  info="$(curl -fsS --max-time 20 "$(k8s_go env GOPROXY | cut -d, -f1)/k8s.io/kubernetes/@v/$K8S_VERSION.info" 2>/dev/null || true)"
  commit="$(grep -oE '"Hash": *"[0-9a-f]{40}"' <<<"$info" | grep -oE '[0-9a-f]{40}' || true)"
  date="$(date -u -d "$(grep -oE '"Time": *"[^"]+"' <<<"$info" | cut -d'"' -f4)" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null ||
    date -u +%Y-%m-%dT%H:%M:%SZ)"
  log "kubernetes: building ${K8S_COMMANDS[*]} $K8S_VERSION (cold: ~15 min on 2 cores; log: $K8S_HOME/build.log)"
  k8s_go_build_scratch kubernetes k8s.io/kubernetes "$K8S_VERSION" "v0.${K8S_VERSION#v1.}" \
    "$K8S_BIN_DIR" "$(_k8s_ldflags "${commit:-unknown}" "$date")" "${pkgs[@]}"
  printf '%s\n' "$K8S_VERSION" >"$K8S_HOME/.installed"
  log "kubernetes: built in $((SECONDS - t0))s into $K8S_BIN_DIR"
}

# shellcheck source=SCRIPTDIR/pki.sh
source "$K8S_DIR/pki.sh"

# --------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------
# kubectl_admin ARGS...: kubectl as cluster admin (system:masters) against
# our apiserver; short request timeout so health checks never hang.
kubectl_admin() {
  "$K8S_BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" --request-timeout=10s "$@"
}

# kubectl's discovery cache goes to the state dir, not ~/.kube/cache.
export KUBECACHEDIR="${KUBECACHEDIR:-$DEVSTACK_STATE/kube-cache}"

# k8s_require NAME [TIMEOUT_S=90]: wait until component NAME is healthy.
# Start functions call it for what they depend on (kube-apiserver needs
# etcd, the rest need the apiserver): up.sh starts components one after the
# other without waiting, and e.g. kwok gives up after ~30s without an
# apiserver.
k8s_require() {
  local name="$1" f
  f="$(fn_name "$name")"
  is_running "$name" || die "$name is not running (start it first: devstack/up.sh $name)"
  wait_for "$name" "${2:-90}" "${f}_healthy"
}

# k8s_curl_healthz PORT CA_CERT [CURL_ARGS...]: GET https://127.0.0.1:PORT/healthz
# verifying the server cert against CA_CERT; succeeds on "ok".
k8s_curl_healthz() {
  local port="$1" ca="$2"
  shift 2
  [[ "$(curl -fsS --max-time 3 --cacert "$ca" "$@" "https://127.0.0.1:$port/healthz")" == ok ]]
}
