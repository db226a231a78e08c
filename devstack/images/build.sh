#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# devstack/images/build.sh - build DeviceFleet's container images without Docker (buildah, chroot
# isolation, every base image made here) and import them into a containerd's k8s.io namespace.
#
#   devstack/images/build.sh [build] [IMAGE...]   build IMAGEs (default: every image the node runs)
#   devstack/images/build.sh import [IMAGE...]    build what is missing or stale, then import into
#                                                 containerd (skipped where it has the same image)
#   devstack/images/build.sh all                  = import: everything the node runs
#   devstack/images/build.sh refs [IMAGE...]      print "NAME REF" per image
#   devstack/images/build.sh binary REF FILE [USER]
#                                                 scratch image REF with FILE as /NAME, entrypoint
#                                                 ["/NAME"], USER (default 65535:65535)
#   devstack/images/build.sh prune                drop the build cache (buildah's dangling layers)
#
# IMAGEs (README.md): the services ingest processor sink simulator bootstrap operator (the repo's
# Dockerfiles, tagged docker.io/devicefleet/<name>:<appVersion of charts/devicefleet>), pause,
# coredns (binary images), kafka mosquitto postgres (quickstart stand-ins), and the build-only
# bases debian python uv. Dependencies are built first.
#
# Idempotent and incremental: buildah's --layers cache, plus a stamp per image (hash of its
# inputs) that skips buildah altogether when nothing changed. Caches, outside the repo:
#   $DEVSTACK_CACHE/images/   storage/ (buildah's image store), rootfs/ (debootstrap tarballs),
#                             stamps/, tmp/ (RUN --mount=type=cache dirs, exports)
#   $DEVSTACK_STATE/run/buildah  buildah's runroot;  $DEVSTACK_STATE/logs/images/  build logs
# Environment:
#   CONTAINERD_ADDRESS   containerd socket for import (default $DEVSTACK_RUN/containerd/containerd.sock)
#   IMAGES_NO_CACHE=1    rebuild from scratch (no stamps, no layer cache; the rootfs is kept)
#   IMAGES_BUILD_CA      CA bundle the build steps trust, for TLS-intercepting proxies (default
#                        $SSL_CERT_FILE or /etc/ssl/certs/ca-certificates.crt; empty: none)
#   IMAGES_STORAGE_DRIVER  overlay (default) or vfs
#   COREDNS_VERSION, COREDNS_BIN  the coredns image's tag and binary (default: components/kubelet.sh's
#                        version, $DEVSTACK_CACHE/coredns-<version>/bin/coredns)
# Needs root (buildah, debootstrap, chroot). Installs buildah and debootstrap if missing.
set -euo pipefail
IMAGES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib.sh
source "$IMAGES_DIR/../lib.sh"

REPO="$DEVSTACK_REPO"
IMAGES_CACHE="$DEVSTACK_CACHE/images"
IMAGES_STORAGE="$IMAGES_CACHE/storage"
IMAGES_RUNROOT="$DEVSTACK_RUN/buildah"
IMAGES_TMP="$IMAGES_CACHE/tmp"
IMAGES_STAMPS="$IMAGES_CACHE/stamps"
IMAGES_LOGS="$DEVSTACK_LOGS/images"
IMAGES_STORAGE_DRIVER="${IMAGES_STORAGE_DRIVER:-overlay}"
IMAGES_BUILD_CA="${IMAGES_BUILD_CA-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
CONTAINERD_ADDRESS="${CONTAINERD_ADDRESS:-$DEVSTACK_RUN/containerd/containerd.sock}"
CONTAINERD_ADDRESS="${CONTAINERD_ADDRESS#unix://}"

# --------------------------------------------------------------------------
# Versions: read from the files that own them, never repeated here.
# --------------------------------------------------------------------------
# _pin FILE REGEX: first capture group of the first line of FILE matching the sed regex.
_pin() { sed -n -E "s#$2#\\1#p" "$1" | head -n 1; }

APP_VERSION="$(_pin "$REPO/charts/devicefleet/Chart.yaml" '^appVersion:[[:space:]]*"?([^"[:space:]]+)"?.*')"
# The uv the Dockerfiles' "uv" stage names (ghcr.io/astral-sh/uv:X).
UV_VERSION="$(_pin "$REPO/services/ingest/Dockerfile" '.*ghcr\.io/astral-sh/uv:([0-9][0-9.]*).*')"
KAFKA_VERSION="$(_pin "$DEVSTACK_DIR/components/kafka.sh" '^KAFKA_VERSION=([0-9.]+).*')"
K8S_VERSION="$(_pin "$DEVSTACK_DIR/k8s/lib.sh" '^K8S_VERSION=(v[0-9.]+).*')"
COREDNS_VERSION="${COREDNS_VERSION:-$(_pin "$DEVSTACK_DIR/components/kubelet.sh" '^COREDNS_VERSION=(v[0-9.]+).*' 2>/dev/null || true)}"
COREDNS_BIN="${COREDNS_BIN:-$DEVSTACK_CACHE/coredns-$COREDNS_VERSION/bin/coredns}"
[[ -n "$APP_VERSION" ]] || die "no appVersion in charts/devicefleet/Chart.yaml"
[[ -n "$UV_VERSION" ]] || die "no ghcr.io/astral-sh/uv:<version> in services/ingest/Dockerfile"
[[ -n "$KAFKA_VERSION" && -n "$K8S_VERSION" ]] || die "cannot read KAFKA_VERSION / K8S_VERSION"

# Debian's packages of the stand-ins (the image tag says what is inside).
MOSQUITTO_VERSION=2.0.11
PG_MAJOR=15
# The sandbox image tag kubelet/containerd are configured with (k8s/node.sh NODE_PAUSE_IMAGE).
PAUSE_TAG=3.10
DEBIAN_SUITE=bookworm
DEBIAN_PACKAGES=(ca-certificates tzdata)

SERVICES=(ingest processor sink simulator bootstrap operator)
# What the node runs (import's default); coredns joins when its binary exists.
NODE_IMAGES=(pause "${SERVICES[@]}" kafka mosquitto postgres)

declare -A REF=(
  [debian]="localhost/devicefleet/debian:$DEBIAN_SUITE"
  [python]="localhost/devicefleet/python:3.11-$DEBIAN_SUITE"
  [uv]="localhost/devicefleet/uv:$UV_VERSION"
  [pause]="localhost/devicefleet/pause:$PAUSE_TAG"
  [coredns]="localhost/devicefleet/coredns:$COREDNS_VERSION"
  [kafka]="localhost/devicefleet/kafka:$KAFKA_VERSION"
  [mosquitto]="localhost/devicefleet/mosquitto:$MOSQUITTO_VERSION"
  [postgres]="localhost/devicefleet/postgres:$PG_MAJOR"
)
for _s in "${SERVICES[@]}"; do REF[$_s]="docker.io/devicefleet/$_s:$APP_VERSION"; done
unset _s
declare -A DEPS=([python]=debian [kafka]=debian [mosquitto]=debian [postgres]=debian)
for _s in "${SERVICES[@]}"; do DEPS[$_s]="python uv"; done
unset _s

usage() {
  sed -n '3,17p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------
# bah ARGS...: buildah on our own storage (storage.conf written by _setup).
bah() { TMPDIR="$IMAGES_TMP" CONTAINERS_STORAGE_CONF="$IMAGES_CACHE/storage.conf" buildah "$@"; }

# image_id REF: the full image id (config digest, no "sha256:") of REF in our store, or fail.
image_id() { bah inspect --type image --format '{{.FromImageID}}' "$1" 2>/dev/null; }

sha() { sha256sum | cut -d' ' -f1; }

# hash_paths BASE PATH...: one hash over the names, modes and contents of the files under each
# PATH (relative to BASE), leaving out what .dockerignore leaves out (caches, bytecode).
hash_paths() {
  local base="$1"
  shift
  (
    cd "$base"
    find "$@" \( -name __pycache__ -o -name '*.egg-info' -o -name .mypy_cache -o -name .ruff_cache \
      -o -name .pytest_cache \) -prune -o \( -type f -o -type l \) ! -name '*.pyc' -print0 |
      LC_ALL=C sort -z | xargs -0 -r stat -c '%n %a %s' | sha
    find "$@" \( -name __pycache__ -o -name '*.egg-info' -o -name .mypy_cache -o -name .ruff_cache \
      -o -name .pytest_cache \) -prune -o -type f ! -name '*.pyc' -print0 |
      LC_ALL=C sort -z | xargs -0 -r sha256sum | sha
  ) | sha
}

# stamp_fresh NAME KEY: NAME was built from inputs KEY and that image is still in the store.
stamp_fresh() {
  local name="$1" key="$2" want id
  [[ -z "${IMAGES_NO_CACHE:-}" ]] || return 1
  [[ -f "$IMAGES_STAMPS/$name" ]] || return 1
  read -r want id <"$IMAGES_STAMPS/$name" || return 1
  [[ "$want" == "$key" ]] && [[ "$(image_id "${REF[$name]}")" == "$id" ]]
}
stamp_write() { printf '%s %s\n' "$2" "$(image_id "${REF[$1]}")" >"$IMAGES_STAMPS/$1"; }

# run_logged NAME CMD...: CMD with its output in $IMAGES_LOGS/NAME.log; its tail on failure.
# CMD may be a function: it runs in a subshell with errexit in force (an `if` would switch it off).
run_logged() {
  local name="$1" logf="$IMAGES_LOGS/$1.log" rc
  shift
  set +e
  (
    set -e
    "$@"
  ) >"$logf" 2>&1
  rc=$?
  set -e
  if ((rc != 0)); then
    tail -n 40 "$logf" >&2
    die "$name: build failed (exit $rc; full log: $logf)"
  fi
}

# bud NAME CONTEXT CONTAINERFILE ARGS...: buildah bud with the settings every build uses.
bud() {
  local name="$1" context="$2" file="$3" args=()
  shift 3
  args=(bud --layers --pull=never --isolation chroot --network host --format oci
    --jobs 1 -f "$file" -t "${REF[$name]}")
  [[ -z "${IMAGES_NO_CACHE:-}" ]] || args+=(--no-cache)
  run_logged "$name" bah "${args[@]}" "$@" "$context"
  # buildah 1.28 keeps the working container of a stage without instructions (`FROM uv AS uv`):
  # drop it (the store is ours alone while we hold the lock).
  bah rm --all >/dev/null
}

# scratch_image NAME USER ENTRYPOINT_JSON FILE...: REF[NAME] from scratch with each FILE at /,
# mode 0755, deterministic (fixed timestamps: the same files give the same image id).
scratch_image() {
  local name="$1" user="$2" entrypoint="$3" c f
  shift 3
  c="$(bah from --pull=never scratch)"
  for f in "$@"; do
    bah copy --quiet --chmod 0755 "$c" "$f" "/$(basename "$f")" >/dev/null
  done
  bah config --os linux --arch "$(go_arch)" --user "$user" --entrypoint "$entrypoint" \
    --label "org.opencontainers.image.title=$name" \
    --label "org.opencontainers.image.source=https://github.com/devicefleet/devicefleet" "$c"
  bah commit --quiet --rm --timestamp 0 --format oci "$c" "${REF[$name]}" >/dev/null
}

go_arch() {
  case "$(uname -m)" in
    x86_64) echo amd64 ;;
    aarch64) echo arm64 ;;
    *) uname -m ;;
  esac
}

# --------------------------------------------------------------------------
# debian: debootstrap --variant=minbase from the host's own apt mirror, as a cached tarball
# --------------------------------------------------------------------------
# apt_mirror SUITE: the first URI the host's apt sources use for SUITE (deb822 and one-line).
apt_mirror() {
  local suite="$1" f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] || continue
    awk -v suite="$suite" '
      function flush() { if (deb && on && (" " suites " ") ~ (" " suite " ") && uri != "") { print uri; found = 1; exit } deb = 0; on = 1; suites = ""; uri = "" }
      BEGIN { on = 1 }
      /^[[:space:]]*$/ { flush(); next }
      /^Types:/ { deb = ($0 ~ /[[:space:]]deb([[:space:]]|$)/) }
      /^URIs:/ { uri = $2 }
      /^Suites:/ { $1 = ""; suites = $0 }
      /^Enabled:[[:space:]]*no/ { on = 0 }
      END { if (!found) flush() }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f "$f" ]] || continue
    awk -v suite="$suite" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i + 1) == suite) print $i }' "$f"
  done
}

_debian_mirrors() {
  DEBIAN_MIRROR="${IMAGES_DEBIAN_MIRROR:-$(apt_mirror "$DEBIAN_SUITE" | head -n 1)}"
  DEBIAN_SECURITY_MIRROR="${IMAGES_DEBIAN_SECURITY_MIRROR:-$(apt_mirror "$DEBIAN_SUITE-security" | head -n 1)}"
  : "${DEBIAN_MIRROR:=http://deb.debian.org/debian}"
  : "${DEBIAN_SECURITY_MIRROR:=http://deb.debian.org/debian-security}"
}

# _debian_sources: the image's /etc/apt/sources.list.d/debian.sources.
_debian_sources() {
  cat <<EOF
Types: deb
URIs: $DEBIAN_MIRROR
Suites: $DEBIAN_SUITE $DEBIAN_SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $DEBIAN_SECURITY_MIRROR
Suites: $DEBIAN_SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
}

# _debian_rootfs DIR: minbase + DEBIAN_PACKAGES, updates applied, trimmed like Docker's slim
# images (no docs, man pages, locales; apt without recommends, no apt lists).
_debian_rootfs() {
  local root="$1"
  debootstrap --variant=minbase --include="$(
    IFS=,
    echo "${DEBIAN_PACKAGES[*]}"
  )" "$DEBIAN_SUITE" "$root" "$DEBIAN_MIRROR"
  rm -f "$root/etc/apt/sources.list"
  _debian_sources >"$root/etc/apt/sources.list.d/debian.sources"
  cat >"$root/etc/dpkg/dpkg.cfg.d/devicefleet-slim" <<'EOF'
# Keep images small (as Docker's debian:*-slim): no docs except copyrights, man, info, locales.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
  cat >"$root/etc/apt/apt.conf.d/90devicefleet" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
EOF
  # Maintainer scripts never start daemons (kept in the image, for the builds on top of it).
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 0755 "$root/usr/sbin/policy-rc.d"
  mount -t proc proc "$root/proc"
  local rc=0
  {
    chroot "$root" apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get -y -q -o Dpkg::Options::=--force-confold upgrade &&
      chroot "$root" apt-get clean
  } || rc=$?
  umount "$root/proc"
  ((rc == 0)) || return "$rc"
  find "$root/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$root"/usr/share/{man,info,lintian}/* "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* \
    "$root"/var/cache/debconf/*-old "$root"/var/log/* "$root"/tmp/* "$root"/var/tmp/* \
    "$root"/var/lib/dpkg/*-old "$root/etc/machine-id"
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  # The runtime provides these.
  : >"$root/etc/resolv.conf"
  echo localhost >"$root/etc/hostname"
}

build_debian() {
  local key tarball work c m
  _debian_mirrors
  key="$( {
    echo "$DEBIAN_SUITE $DEBIAN_MIRROR $DEBIAN_SECURITY_MIRROR ${DEBIAN_PACKAGES[*]}"
    declare -f _debian_rootfs _debian_sources
  } | sha | cut -c1-16)"
  tarball="$IMAGES_CACHE/rootfs/debian-$DEBIAN_SUITE-$key.tar"
  if [[ ! -f "$tarball" ]]; then
    log "debian: debootstrap $DEBIAN_SUITE (minbase + ${DEBIAN_PACKAGES[*]}) from $DEBIAN_MIRROR"
    command -v debootstrap >/dev/null || apt_install debootstrap
    rm -rf "$IMAGES_TMP"/rootfs.* # what an interrupted run left (we hold the lock)
    work="$(mktemp -d "$IMAGES_TMP/rootfs.XXXXXX")"
    run_logged debian _debian_rootfs "$work/rootfs"
    mkdir -p "$IMAGES_CACHE/rootfs"
    tar --numeric-owner --xattrs -C "$work/rootfs" -cf "$tarball.tmp" .
    mv -f "$tarball.tmp" "$tarball"
    rm -rf "$work"
    # Older tarballs of other keys are not needed any more.
    find "$IMAGES_CACHE/rootfs" -name "debian-$DEBIAN_SUITE-*.tar" ! -path "$tarball" -delete
  fi
  stamp_fresh debian "$key" && return 0
  log "debian: ${REF[debian]} from $(basename "$tarball")"
  c="$(bah from --pull=never scratch)"
  m="$(bah mount "$c")"
  tar --numeric-owner --xattrs -C "$m" -xpf "$tarball"
  bah umount "$c" >/dev/null
  bah config --os linux --arch "$(go_arch)" \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --cmd '["bash"]' --label "org.opencontainers.image.title=devicefleet-debian" \
    --label "org.opencontainers.image.description=Debian $DEBIAN_SUITE minbase (debootstrap from $DEBIAN_MIRROR)" "$c"
  bah commit --quiet --rm --format oci "$c" "${REF[debian]}" >/dev/null
  stamp_write debian "$key"
}

# --------------------------------------------------------------------------
# Images from a Containerfile under devstack/images/NAME/ on the debian base
# --------------------------------------------------------------------------
build_containerfile() {
  local name="$1" dir="$IMAGES_DIR/$1" key extra=() base
  base="${REF[debian]}"
  extra=(--build-arg "BASE_IMAGE=$base")
  case "$name" in
    kafka)
      # The jars of the local stack's Kafka (devstack/components/kafka.sh installs them).
      # shellcheck source=../components/kafka.sh
      source "$DEVSTACK_DIR/components/kafka.sh"
      kafka_installed || die "kafka: the Kafka jars are not installed ($KAFKA_HOME)"
      extra+=(--build-arg "KAFKA_VERSION=$KAFKA_VERSION"
        --build-context "kafka-dist=$KAFKA_HOME" --build-context "devstack-kafka=$DEVSTACK_DIR/kafka")
      key="$(cat "$KAFKA_HOME/.installed"; hash_paths "$KAFKA_HOME" libs; hash_paths "$DEVSTACK_DIR/kafka" log4j.properties tools-log4j.properties tools.sh)"
      ;;
    mosquitto) extra+=(--build-arg "MOSQUITTO_VERSION=$MOSQUITTO_VERSION") ;;
    postgres) extra+=(--build-arg "PG_MAJOR=$PG_MAJOR") ;;
    *) ;;
  esac
  key="$( {
    echo "${key:-}" "${extra[*]}" "$(image_id "$base")"
    hash_paths "$dir" .
  } | sha)"
  stamp_fresh "$name" "$key" && return 0
  log "$name: building ${REF[$name]} (log: $IMAGES_LOGS/$name.log)"
  bud "$name" "$dir" "$dir/Containerfile" "${extra[@]}"
  stamp_write "$name" "$key"
}

# --------------------------------------------------------------------------
# uv: the static (musl) uv of PyPI's uv==UV_VERSION wheel at /uv, /uvx (as ghcr.io/astral-sh/uv)
# --------------------------------------------------------------------------
_uv_fetch() {
  local dir="$1" arch wheel host_uv
  arch="$(uname -m)"
  mkdir -p "$dir/wheel"
  if ! python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
    --platform "musllinux_1_1_$arch" --dest "$dir/wheel" "uv==$UV_VERSION"; then
    # No pip or no index: the host's uv if it is that version (glibc-linked; it only runs in the
    # builder stage, on the Debian base).
    host_uv="$(python3 -c 'import uv; print(uv.find_uv_bin())' 2>/dev/null || command -v uv)"
    "$host_uv" --version | grep -q "^uv $UV_VERSION" || return 1
    cp "$host_uv" "$dir/uv"
    cp "$(dirname "$host_uv")/uvx" "$dir/uvx"
    rm -rf "$dir/wheel"
    return 0
  fi
  wheel="$(find "$dir/wheel" -name "uv-$UV_VERSION-*musllinux*.whl" | head -n 1)"
  [[ -n "$wheel" ]] || return 1
  python3 - "$wheel" "$dir" <<'PY'
import os, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if "/scripts/" in name and base in ("uv", "uvx"):
            with open(os.path.join(out, base), "wb") as f:
                f.write(z.read(name))
            os.chmod(os.path.join(out, base), 0o755)
PY
  rm -rf "$dir/wheel"
  "$dir/uv" --version | grep -q "^uv $UV_VERSION" || return 1
}

build_uv() {
  local dir="$IMAGES_CACHE/uv-$UV_VERSION" key
  if [[ ! -x "$dir/uv" || ! -x "$dir/uvx" ]]; then
    log "uv: fetching the static uv $UV_VERSION (PyPI wheel, musllinux)"
    rm -rf "$dir"
    run_logged uv _uv_fetch "$dir"
  fi
  key="$(cat "$dir/uv" "$dir/uvx" | sha)"
  stamp_fresh uv "$key" && return 0
  log "uv: ${REF[uv]}"
  scratch_image uv 0:0 '["/uv"]' "$dir/uv" "$dir/uvx"
  stamp_write uv "$key"
}

# --------------------------------------------------------------------------
# pause (Kubernetes' own pause.c, static) and other binary-only images
# --------------------------------------------------------------------------
build_pause() {
  local src="$DEVSTACK_CACHE/go/mod/k8s.io/kubernetes@$K8S_VERSION/build/pause/linux/pause.c"
  local dir="$IMAGES_CACHE/pause" tag key tmp
  if [[ ! -f "$src" ]]; then
    log "pause: fetching pause.c of k8s.io/kubernetes@$K8S_VERSION (Go module proxy)"
    command -v go >/dev/null || die "pause: go is needed to fetch k8s.io/kubernetes@$K8S_VERSION"
    tmp="$(mktemp -d "$IMAGES_TMP/gomod.XXXXXX")"
    (cd "$tmp" && GOMODCACHE="$DEVSTACK_CACHE/go/mod" GOFLAGS=-modcacherw GOWORK=off \
      go mod download -json "k8s.io/kubernetes@$K8S_VERSION" >/dev/null) ||
      die "pause: go mod download k8s.io/kubernetes@$K8S_VERSION failed"
    rm -rf "$tmp"
    [[ -f "$src" ]] || die "pause: $src missing after go mod download"
  fi
  # The version pause -v prints: the Makefile's TAG next to pause.c.
  tag="$(_pin "$(dirname "$src")/../Makefile" '^TAG \?= *([0-9.]+).*')"
  key="$( (cat "$src"; echo "$tag $K8S_VERSION"; gcc --version | head -n 1) | sha)"
  if [[ ! -x "$dir/$key/pause" ]]; then
    rm -rf "$dir"
    mkdir -p "$dir/$key"
    run_logged pause gcc -Os -Wall -static "-DVERSION=v${tag:-$PAUSE_TAG}-$K8S_VERSION" \
      -o "$dir/$key/pause" "$src"
    strip "$dir/$key/pause"
  fi
  stamp_fresh pause "$key" && return 0
  log "pause: ${REF[pause]} ($("$dir/$key/pause" -v))"
  scratch_image pause 65535:65535 '["/pause"]' "$dir/$key/pause"
  stamp_write pause "$key"
}

build_coredns() {
  [[ -n "$COREDNS_VERSION" ]] || die "coredns: no version (set COREDNS_VERSION)"
  [[ -x "$COREDNS_BIN" ]] || die "coredns: no binary at $COREDNS_BIN (built by the kubelet component's install, or set COREDNS_BIN)"
  local key
  key="$(sha <"$COREDNS_BIN")"
  stamp_fresh coredns "$key" && return 0
  log "coredns: ${REF[coredns]} from $COREDNS_BIN"
  # root: the pod adds NET_BIND_SERVICE for port 53 and drops everything else.
  scratch_image coredns 0:0 '["/coredns"]' "$COREDNS_BIN"
  stamp_write coredns "$key"
}

# cmd_binary REF FILE [USER]: any static binary as a one-file image.
cmd_binary() {
  [[ $# -ge 2 && $# -le 3 ]] || usage
  local ref="$1" file="$2" user="${3:-65535:65535}" name key
  [[ -f "$file" && -x "$file" ]] || die "binary: $file is not an executable file"
  name="binary-$(basename "$file")"
  REF[$name]="$ref"
  key="$( (sha <"$file"; echo "$ref $user") | sha)"
  stamp_fresh "$name" "$key" && { log "$ref: up to date"; return 0; }
  scratch_image "$name" "$user" "[\"/$(basename "$file")\"]" "$file"
  stamp_write "$name" "$key"
  log "$ref: built ($(image_id "$ref" | cut -c1-12))"
}

# --------------------------------------------------------------------------
# The services: the repo's own Dockerfiles, on the local uv and python images
# --------------------------------------------------------------------------
# service_dockerfile NAME: the member's Dockerfile with its two base images swapped for the local
# ones, in the cache. The repo's Dockerfiles pin ghcr.io/astral-sh/uv:X and python:...@sha256
# literally (tests/unit/deploy checks the pins), so the FROM lines are rewritten; a Dockerfile
# that takes them as ARG UV_IMAGE / PYTHON_IMAGE gets --build-arg instead (see build_service).
service_dockerfile() {
  local name="$1" src out
  src="$(service_member "$name")/Dockerfile"
  out="$IMAGES_CACHE/dockerfiles/$name.Dockerfile"
  mkdir -p "$(dirname "$out")"
  sed -E -e "s#^(FROM[[:space:]]+)ghcr\\.io/astral-sh/uv:[^[:space:]]+#\\1${REF[uv]}#" \
    -e "s#^(FROM[[:space:]]+)python:[^[:space:]]+#\\1${REF[python]}#" "$REPO/$src" >"$out.tmp"
  if grep -E '^FROM[[:space:]]' "$out.tmp" |
    grep -v -E "^FROM[[:space:]]+(localhost/devicefleet/|\\$\\{?(UV|PYTHON)_IMAGE\\}?[[:space:]])" |
    grep -q .; then
    die "$name: $src has a FROM that is neither the uv nor the python base: $(grep -E '^FROM' "$REPO/$src" | tr '\n' ';')"
  fi
  mv -f "$out.tmp" "$out"
  printf '%s\n' "$out"
}

service_member() {
  if [[ "$1" == operator ]]; then echo operator; else echo "services/$1"; fi
}

build_service() {
  local name="$1" file key sources=() extra=()
  file="$(service_dockerfile "$name")"
  # What the Dockerfile copies from the context (COPY without --from): its inputs.
  mapfile -t sources < <(awk '$1 == "COPY" && $0 !~ /--from/ { for (i = 2; i < NF; i++) if ($i !~ /^--/) print $i }' "$file")
  [[ ${#sources[@]} -gt 0 ]] || die "$name: no COPY sources in $file"
  grep -q -E '^ARG[[:space:]]+UV_IMAGE' "$file" && extra+=(--build-arg "UV_IMAGE=${REF[uv]}")
  grep -q -E '^ARG[[:space:]]+PYTHON_IMAGE' "$file" && extra+=(--build-arg "PYTHON_IMAGE=${REF[python]}")
  if [[ -n "$IMAGES_BUILD_CA" ]]; then
    # uv downloads from PyPI over TLS: the build steps trust what the host trusts (for
    # TLS-intercepting proxies), and uv, which has its own CA roots, is told to use the system's.
    # Bind mounts of the RUN steps only: nothing of it lands in a layer.
    extra+=(-v "$IMAGES_BUILD_CA:/etc/ssl/certs/ca-certificates.crt:ro"
      -v "$IMAGES_CACHE/uv.toml:/etc/uv/uv.toml:ro")
  fi
  key="$( {
    cat "$file"
    echo "${extra[*]}" "$(image_id "${REF[uv]}")" "$(image_id "${REF[python]}")" "${IMAGES_BUILD_CA:+ca}"
    hash_paths "$REPO" "${sources[@]}"
    cat "$REPO/.dockerignore"
  } | sha)"
  stamp_fresh "$name" "$key" && return 0
  log "$name: building ${REF[$name]} from $(service_member "$name")/Dockerfile (log: $IMAGES_LOGS/$name.log)"
  bud "$name" "$REPO" "$file" "${extra[@]}"
  stamp_write "$name" "$key"
}

# --------------------------------------------------------------------------
# Build orchestration
# --------------------------------------------------------------------------
declare -A BUILT=()

build_one() {
  local name="$1" dep t0=$SECONDS
  [[ -n "${BUILT[$name]:-}" ]] && return 0
  for dep in ${DEPS[$name]:-}; do build_one "$dep"; done
  case "$name" in
    debian) build_debian ;;
    uv) build_uv ;;
    pause) build_pause ;;
    coredns) build_coredns ;;
    python | kafka | mosquitto | postgres) build_containerfile "$name" ;;
    *) build_service "$name" ;;
  esac
  BUILT[$name]=1
  if ((SECONDS - t0 > 1)); then
    log "$name: ${REF[$name]} ready ($((SECONDS - t0))s)"
  fi
}

# select_images IMAGE...: validated names into SELECTED (default: NODE_IMAGES, + coredns if built).
select_images() {
  local n
  SELECTED=()
  if [[ $# -eq 0 ]]; then
    SELECTED=("${NODE_IMAGES[@]}")
    [[ -n "$COREDNS_VERSION" && -x "$COREDNS_BIN" ]] && SELECTED+=(coredns)
    return 0
  fi
  for n in "$@"; do
    [[ -n "${REF[$n]:-}" ]] || die "unknown image '$n' (known: ${!REF[*]})"
    SELECTED+=("$n")
  done
}

# _setup COMMAND [IMAGE...]: tools, directories, storage.conf, the lock; first re-runs the script
# in its own mount namespace (_private_mounts).
_setup() {
  local n
  [[ "$(id -u)" -eq 0 ]] || die "building images needs root (buildah chroot isolation, debootstrap)"
  if [[ -z "${_IMAGES_IN_NAMESPACE:-}" ]]; then
    # Whatever needs apt (that is, a writable /var/lib) happens out here.
    command -v buildah >/dev/null || apt_install buildah
    command -v debootstrap >/dev/null || apt_install debootstrap
    if [[ "$1" == import || "$1" == all ]]; then
      command -v ctr >/dev/null || apt_install containerd
    fi
    if [[ "$1" != binary && "$1" != prune ]]; then
      select_images "${@:2}"
      for n in "${SELECTED[@]}"; do
        if [[ "$n" == kafka ]]; then
          # shellcheck source=../components/kafka.sh
          source "$DEVSTACK_DIR/components/kafka.sh"
          kafka_installed || kafka_install
        fi
      done
    fi
    _private_mounts "$@"
  fi
  mkdir -p "$IMAGES_STORAGE" "$IMAGES_RUNROOT" "$IMAGES_TMP" "$IMAGES_STAMPS" "$IMAGES_LOGS"
  cat >"$IMAGES_CACHE/storage.conf.tmp" <<EOF
# Written by devstack/images/build.sh: buildah's own store, never /var/lib/containers.
[storage]
driver = "$IMAGES_STORAGE_DRIVER"
graphroot = "$IMAGES_STORAGE"
runroot = "$IMAGES_RUNROOT"
EOF
  mv -f "$IMAGES_CACHE/storage.conf.tmp" "$IMAGES_CACHE/storage.conf"
  # uv ships its own CA roots; with IMAGES_BUILD_CA mounted, builds tell it to use the system's.
  printf '# Mounted at /etc/uv/uv.toml during builds (devstack/images/build.sh).\nsystem-certs = true\n' \
    >"$IMAGES_CACHE/uv.toml"
  if [[ -n "$IMAGES_BUILD_CA" && ! -r "$IMAGES_BUILD_CA" ]]; then
    die "IMAGES_BUILD_CA=$IMAGES_BUILD_CA is not readable (set it empty to use no CA bundle)"
  fi
  # One build at a time per cache (not the devstack lock: up.sh may hold that while calling us).
  exec {IMAGES_LOCK_FD}>"$IMAGES_CACHE/.lock"
  flock -w 1800 "$IMAGES_LOCK_FD" || die "another devstack/images/build.sh holds $IMAGES_CACHE/.lock"
}

# _private_mounts COMMAND [ARGS...]: run this script again in a private mount namespace in which
# /var/lib is read-only. containers/image (in buildah) keeps a blob-info cache in
# /var/lib/containers/cache when run as root, and buildah 1.28 has no option to move it; unable
# to create it, it keeps that cache in memory, so nothing is written under /var/lib/containers.
# The mounts of the builds (overlay, the debootstrap chroot's /proc) also end with the namespace.
_private_mounts() {
  exec env _IMAGES_IN_NAMESPACE=1 unshare --mount --propagation private -- \
    bash -c 'mount --bind /var/lib /var/lib && mount -o remount,bind,ro /var/lib && exec "$@"' \
    build.sh bash "$IMAGES_DIR/build.sh" "$@"
}

cmd_build() {
  local n t0=$SECONDS
  # Working containers an interrupted run left behind.
  bah rm --all >/dev/null
  select_images "$@"
  for n in "${SELECTED[@]}"; do build_one "$n"; done
  log "images ready (${SELECTED[*]}) in $((SECONDS - t0))s"
}

# --------------------------------------------------------------------------
# Import into containerd (k8s.io namespace)
# --------------------------------------------------------------------------
ctr_k8s() { ctr --address "$CONTAINERD_ADDRESS" --namespace k8s.io "$@"; }

# containerd_config_digest REF: the config digest (= buildah's image id) of REF in containerd.
containerd_config_digest() {
  local digest
  digest="$(ctr_k8s images ls 2>/dev/null | awk -v ref="$1" '$1 == ref { print $3 }')"
  [[ -n "$digest" ]] || return 0
  ctr_k8s content get "$digest" 2>/dev/null |
    grep -o -E '"config"[[:space:]]*:[[:space:]]*\{[^}]*\}' | grep -o -E 'sha256:[0-9a-f]{64}' | head -n 1
}

import_one() {
  local name="$1" ref id archive
  ref="${REF[$name]}"
  id="$(image_id "$ref")" || die "$name: $ref is not built"
  if [[ "$(containerd_config_digest "$ref")" == "sha256:$id" ]]; then
    return 0
  fi
  archive="$IMAGES_TMP/import-$name.tar"
  rm -f "$archive"
  bah push --quiet "$ref" "oci-archive:$archive:$ref" >/dev/null
  ctr_k8s images import "$archive" >/dev/null ||
    die "$name: ctr images import of $ref failed"
  rm -f "$archive"
  [[ "$(containerd_config_digest "$ref")" == "sha256:$id" ]] ||
    die "$name: $ref in containerd is not image $id after the import"
  log "$name: imported $ref (${id:0:12})"
  IMPORTED+=("$name")
}

cmd_import() {
  local n t0=$SECONDS
  IMPORTED=()
  [[ -S "$CONTAINERD_ADDRESS" ]] || die "no containerd socket at $CONTAINERD_ADDRESS (set CONTAINERD_ADDRESS)"
  ctr_k8s version >/dev/null || die "containerd at $CONTAINERD_ADDRESS does not answer"
  cmd_build "$@"
  for n in "${SELECTED[@]}"; do import_one "$n"; done
  log "containerd $CONTAINERD_ADDRESS (k8s.io): ${#IMPORTED[@]} imported, $((${#SELECTED[@]} - ${#IMPORTED[@]})) already there ($((SECONDS - t0))s)"
  for n in "${SELECTED[@]}"; do printf '%s\n' "${REF[$n]}"; done
}

cmd_refs() {
  local n
  select_images "$@"
  for n in "${SELECTED[@]}"; do printf '%s %s\n' "$n" "${REF[$n]}"; done
}

cmd_prune() {
  bah rmi --prune >/dev/null || true
  rm -rf "${IMAGES_TMP:?}"/buildah-cache* "${IMAGES_STAMPS:?}"/*
  log "pruned dangling images, RUN cache mounts and stamps in $IMAGES_CACHE"
}

main() {
  local cmd="${1:-build}"
  [[ $# -eq 0 ]] || shift
  case "$cmd" in
    build | import | binary | prune) ;;
    all) [[ $# -eq 0 ]] || usage ;;
    refs)
      cmd_refs "$@"
      return 0
      ;;
    -h | --help | help) usage ;;
    *)
      # "build.sh ingest kafka": names alone mean build.
      [[ -n "${REF[$cmd]:-}" ]] || usage
      set -- "$cmd" "$@"
      cmd=build
      ;;
  esac
  _setup "$cmd" "$@"
  case "$cmd" in
    build) cmd_build "$@" ;;
    import | all) cmd_import "$@" ;;
    binary) cmd_binary "$@" ;;
    prune) cmd_prune ;;
  esac
}

main "$@"
