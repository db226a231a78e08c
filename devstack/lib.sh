# shellcheck shell=bash
# devstack/lib.sh - shared helpers for the DeviceFleet local data stack.
#
# Source it (do not execute it):   source "$(dirname "$0")/lib.sh"
# It needs bash >= 4.3 and expects the caller to use `set -euo pipefail`.
#
# What it provides
#   Paths     DEVSTACK_DIR (this directory), DEVSTACK_REPO (repo root),
#             DEVSTACK_CACHE (downloads/installs, outside the repo),
#             DEVSTACK_STATE with data/<component>/, logs/<component>.log,
#             pids/<component>.pid, conf/<component>/ (generated configs),
#             run/<component>/ (sockets).
#   Settings  every KEY=VALUE of ports.env exported as a shell variable.
#   Logging   log, warn, die.
#   Processes start_process, stop_process, is_running, pid_of, wait_for.
#   Misc      port_in_use, render_template, component helpers.
#
# The process helpers are generic: DeviceFleet's own services can be run with
# them too, e.g.
#   start_process ingest "$(log_file ingest)" python -m services.ingest
#   wait_for ingest 30 curl -fsS "http://127.0.0.1:$INGEST_PORT/metrics"
#   stop_process ingest 20

if [[ -n "${_DEVSTACK_LIB_LOADED:-}" ]]; then
  return 0
fi
_DEVSTACK_LIB_LOADED=1

# --------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------
DEVSTACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEVSTACK_REPO="$(cd "$DEVSTACK_DIR/.." && pwd)"
DEVSTACK_CACHE="${DEVSTACK_CACHE:-$HOME/.cache/devicefleet}"
DEVSTACK_STATE="${DEVSTACK_STATE:-$HOME/.local/state/devicefleet}"
# Alternative ports file, e.g. to run a second stack side by side (opt-in).
DEVSTACK_PORTS_FILE="${DEVSTACK_PORTS_FILE:-$DEVSTACK_DIR/ports.env}"
DEVSTACK_DATA="$DEVSTACK_STATE/data"
DEVSTACK_LOGS="$DEVSTACK_STATE/logs"
DEVSTACK_PIDS="$DEVSTACK_STATE/pids"
DEVSTACK_CONF="$DEVSTACK_STATE/conf"
DEVSTACK_RUN="$DEVSTACK_STATE/run"
export DEVSTACK_DIR DEVSTACK_REPO DEVSTACK_CACHE DEVSTACK_STATE DEVSTACK_PORTS_FILE \
  DEVSTACK_DATA DEVSTACK_LOGS DEVSTACK_PIDS DEVSTACK_CONF DEVSTACK_RUN

# Components in start order (down.sh stops them in reverse). Each component
# NAME has a file components/NAME.sh defining the functions described in
# README.md ("Adding a component").
DEVSTACK_COMPONENTS=(postgres kafka mosquitto mosquitto-secure prometheus
  etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

# --------------------------------------------------------------------------
# Logging
# --------------------------------------------------------------------------
# log MESSAGE...   informational line on stderr
log() { printf 'devstack: %s\n' "$*" >&2; }
# warn MESSAGE...  warning line on stderr
warn() { printf 'devstack: WARNING: %s\n' "$*" >&2; }
# die MESSAGE...   error line on stderr, then exit 1
die() {
  printf 'devstack: ERROR: %s\n' "$*" >&2
  exit 1
}

# node_enabled: whether the stack includes the real node (containerd, kubelet, kube-proxy:
# pods that really run, see k8s/node.sh). DEVSTACK_NODE=on|off|auto (default auto: on when
# running as root, which the node needs for network namespaces, iptables and cgroups).
node_enabled() {
  case "${DEVSTACK_NODE:-auto}" in
    on) return 0 ;;
    off) return 1 ;;
    auto) [[ "$(id -u)" -eq 0 ]] ;;
    *) die "DEVSTACK_NODE must be on, off or auto (got '$DEVSTACK_NODE')" ;;
  esac
}
if node_enabled; then
  DEVSTACK_COMPONENTS+=(containerd kubelet kube-proxy)
fi

# --------------------------------------------------------------------------
# ports.env
# --------------------------------------------------------------------------
# load_ports_env [FILE]: export every KEY=VALUE line of FILE (default
# $DEVSTACK_PORTS_FILE). Values are taken literally (no expansion).
load_ports_env() {
  local file="${1:-$DEVSTACK_PORTS_FILE}" line key value n=0
  [[ -r "$file" ]] || die "cannot read $file"
  DEVSTACK_ENV_KEYS=()
  while IFS= read -r line || [[ -n "$line" ]]; do
    n=$((n + 1))
    line="${line%$'\r'}"
    [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
    [[ "$line" =~ ^([A-Z][A-Z0-9_]*)=(.*)$ ]] || die "$file:$n: expected KEY=VALUE, got: $line"
    key="${BASH_REMATCH[1]}"
    value="${BASH_REMATCH[2]}"
    printf -v "$key" '%s' "$value"
    # shellcheck disable=SC2163  # exporting the variable named by $key
    export "$key"
    DEVSTACK_ENV_KEYS+=("$key")
  done <"$file"
}
load_ports_env "$DEVSTACK_PORTS_FILE"

# --------------------------------------------------------------------------
# Per-component paths
# --------------------------------------------------------------------------
log_file() { printf '%s/%s.log' "$DEVSTACK_LOGS" "$1"; }   # log_file NAME
pid_file() { printf '%s/%s.pid' "$DEVSTACK_PIDS" "$1"; }   # pid_file NAME
data_dir() { printf '%s/%s' "$DEVSTACK_DATA" "$1"; }       # data_dir NAME
conf_dir() { printf '%s/%s' "$DEVSTACK_CONF" "$1"; }       # conf_dir NAME

ensure_state_dirs() {
  mkdir -p "$DEVSTACK_DATA" "$DEVSTACK_LOGS" "$DEVSTACK_PIDS" "$DEVSTACK_CONF" \
    "$DEVSTACK_RUN" "$DEVSTACK_CACHE"
}

# --------------------------------------------------------------------------
# Process management
# --------------------------------------------------------------------------
# Pid files: pids/NAME.pid holds just the pid (easy to read from Python);
# pids/NAME.start holds the process start time (field 22 of /proc/PID/stat)
# recorded at launch. A pid only counts as "ours" while it is alive, not a
# zombie, and still has that start time, so a recycled pid is never killed.

# _proc_field PID INDEX: field of /proc/PID/stat after the "(comm)" field
# (INDEX 0 = state, 19 = starttime). Fails if the process does not exist.
_proc_field() {
  local stat rest fields
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  rest="${stat##*) }"
  read -r -a fields <<<"$rest"
  printf '%s' "${fields[$2]}"
}

# _pid_alive PID [STARTTIME]: process exists, is not a zombie (an exited
# child nobody reaped yet) and (if given) started at STARTTIME.
_pid_alive() {
  local pid="$1" want="${2:-}" state start
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  state="$(_proc_field "$pid" 0)" || return 1
  [[ "$state" != Z && "$state" != X ]] || return 1
  if [[ -n "$want" ]]; then
    start="$(_proc_field "$pid" 19)" || return 1
    [[ "$start" == "$want" ]] || return 1
  fi
  return 0
}

# pid_of NAME: print the pid from NAME's pid file if that process is running
# (same start time), else print nothing and return 1.
pid_of() {
  local name="$1" pf pid start
  pf="$(pid_file "$name")"
  # Both files are written by start_process; without the start time we
  # cannot tell the pid apart from a recycled one, so it does not count.
  [[ -s "$pf" && -s "$DEVSTACK_PIDS/$name.start" ]] || return 1
  pid="$(head -n1 "$pf")"
  start="$(head -n1 "$DEVSTACK_PIDS/$name.start")"
  _pid_alive "$pid" "$start" || return 1
  printf '%s' "$pid"
}

# is_running NAME: exit status 0 if the process recorded for NAME is alive.
is_running() { pid_of "$1" >/dev/null; }

# start_process NAME LOGFILE CMD [ARGS...]
#   Runs CMD in the background in its own session (setsid + nohup, stdin from
#   /dev/null, stdout+stderr appended to LOGFILE), writes pids/NAME.pid and
#   pids/NAME.start, and returns immediately (use wait_for to check health).
#   Environment variables of the caller are inherited, so
#   `FOO=1 start_process ...` or exported variables work.
#   Refuses (returns 1) if NAME is already running. A stale pid file is
#   replaced. LOGFILE is appended to (a header line marks each start) and
#   rotated once it exceeds DEVSTACK_LOG_ROTATE_MB. CMD must stay in the foreground (no self-daemonizing), because
#   its pid is the one recorded.
start_process() {
  local name="$1" logfile="$2" pid pf
  shift 2
  [[ $# -gt 0 ]] || die "start_process: no command given for $name"
  if pid="$(pid_of "$name")"; then
    warn "$name is already running (pid $pid); not starting it again"
    return 1
  fi
  mkdir -p "$DEVSTACK_PIDS" "$(dirname "$logfile")"
  pf="$(pid_file "$name")"
  rm -f "$pf" "$DEVSTACK_PIDS/$name.start"
  # Keep logs bounded: a log over DEVSTACK_LOG_ROTATE_MB (default 100) is
  # moved to LOGFILE.1 (one generation) before the process starts.
  if [[ -f "$logfile" ]] && (($(stat -c %s "$logfile") > ${DEVSTACK_LOG_ROTATE_MB:-100} * 1048576)); then
    mv -f "$logfile" "$logfile.1"
  fi
  printf '==== devstack: starting %s at %s: %s\n' "$name" "$(date -Is)" "$*" >>"$logfile"
  # Without job control a background child is not a process-group leader, so
  # setsid execs in place (no extra fork) and $! is the command's own pid.
  # fd 9 (our lock, see with_lock) is closed so daemons do not inherit it.
  local had_m=""
  if [[ $- == *m* ]]; then had_m=1; set +m; fi
  setsid nohup "$@" >>"$logfile" 2>&1 </dev/null 9>&- &
  pid=$!
  if [[ -n "$had_m" ]]; then set -m; fi
  printf '%s\n' "$pid" >"$pf.tmp" && mv -f "$pf.tmp" "$pf"
  if _proc_field "$pid" 19 >"$DEVSTACK_PIDS/$name.start.tmp"; then
    mv -f "$DEVSTACK_PIDS/$name.start.tmp" "$DEVSTACK_PIDS/$name.start"
  else
    rm -f "$DEVSTACK_PIDS/$name.start.tmp"
  fi
  log "started $name (pid $pid), log: $logfile"
}

# stop_process NAME [TIMEOUT_S=30] [SIGNAL=TERM]
#   Sends SIGNAL to the process named by pids/NAME.pid (only if it is still
#   the same process, see above), waits up to TIMEOUT_S seconds for it to
#   exit, then SIGKILLs its whole process group (it leads its own session).
#   Removes the pid file. Returns 0 if NAME is not running.
stop_process() {
  local name="$1" timeout="${2:-30}" sig="${3:-TERM}" pid start deadline
  if ! pid="$(pid_of "$name")"; then
    rm -f "$(pid_file "$name")" "$DEVSTACK_PIDS/$name.start"
    return 0
  fi
  start="$(_proc_field "$pid" 19)"
  log "stopping $name (pid $pid, SIG$sig)"
  kill "-$sig" "$pid" 2>/dev/null || true
  deadline=$((SECONDS + timeout))
  while _pid_alive "$pid" "$start" && ((SECONDS < deadline)); do
    sleep 0.2
  done
  if _pid_alive "$pid" "$start"; then
    warn "$name (pid $pid) did not exit within ${timeout}s; sending SIGKILL"
    if [[ "$(_proc_field "$pid" 2)" == "$pid" ]]; then
      kill -KILL -- "-$pid" 2>/dev/null || true   # its own process group
    else
      kill -KILL "$pid" 2>/dev/null || true
    fi
    deadline=$((SECONDS + 10))
    while _pid_alive "$pid" "$start" && ((SECONDS < deadline)); do sleep 0.2; done
  fi
  rm -f "$(pid_file "$name")" "$DEVSTACK_PIDS/$name.start"
}

# wait_for NAME TIMEOUT_S CMD [ARGS...]
#   Runs CMD (output discarded) every 0.5s until it succeeds. If it does not
#   succeed within TIMEOUT_S seconds, or NAME has a pid file whose process
#   has died, prints
#     devstack: NAME did not become healthy within Ns; last log lines of LOG:
#   followed by the last 30 lines of logs/NAME.log and returns 1 (so a
#   `set -e` caller exits non-zero).
wait_for() {
  local name="$1" timeout="$2" deadline logfile
  shift 2
  logfile="$(log_file "$name")"
  deadline=$((SECONDS + timeout))
  while true; do
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    if [[ -s "$(pid_file "$name")" ]] && ! is_running "$name"; then
      printf 'devstack: %s: its process exited\n' "$name" >&2
      printf 'devstack: %s did not become healthy within %ss; last log lines of %s:\n' \
        "$name" "$timeout" "$logfile" >&2
      break
    fi
    if ((SECONDS >= deadline)); then
      printf 'devstack: %s did not become healthy within %ss; last log lines of %s:\n' \
        "$name" "$timeout" "$logfile" >&2
      break
    fi
    sleep 0.5
  done
  if [[ -r "$logfile" ]]; then
    tail -n 30 "$logfile" | sed 's/^/    /' >&2
  else
    printf '    (no log file)\n' >&2
  fi
  return 1
}

# --------------------------------------------------------------------------
# Misc helpers
# --------------------------------------------------------------------------
# port_in_use PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# render_template SRC DST [KEY=VALUE...]: copy SRC to DST replacing @KEY@ for
# every key of ports.env, DEVSTACK_* path variables and the extra KEY=VALUE
# pairs. Fails if an @WORD@ placeholder is left over.
render_template() {
  local src="$1" dst="$2" content key value pair
  shift 2
  content="$(cat "$src")"
  for key in "${DEVSTACK_ENV_KEYS[@]}" DEVSTACK_CACHE DEVSTACK_STATE DEVSTACK_DATA \
    DEVSTACK_LOGS DEVSTACK_CONF DEVSTACK_RUN DEVSTACK_DIR; do
    content="${content//@"$key"@/${!key}}"
  done
  for pair in "$@"; do
    key="${pair%%=*}"
    value="${pair#*=}"
    content="${content//@"$key"@/$value}"
  done
  if [[ "$content" =~ @[A-Z][A-Z0-9_]*@ ]]; then
    die "render_template $src: unresolved placeholder ${BASH_REMATCH[0]}"
  fi
  mkdir -p "$(dirname "$dst")"
  printf '%s\n' "$content" >"$dst.tmp"
  mv -f "$dst.tmp" "$dst"
}

# grant_traverse USER DIR: make sure USER can reach DIR (search permission
# on every ancestor). Needed because services that refuse to run as root
# (postgres) keep their data under root's 0700 $HOME. Uses a POSIX ACL entry
# for just that user (package acl) rather than opening the dirs to everyone.
grant_traverse() {
  local user="$1" dir="$2" d="" part parts
  IFS=/ read -r -a parts <<<"${dir#/}"
  # From / downwards, so only the dirs that really block get an entry.
  for part in "${parts[@]}"; do
    [[ -n "$part" ]] || continue
    d="$d/$part"
    [[ -d "$d" ]] || break
    if ! runuser -u "$user" -- test -x "$d" 2>/dev/null; then
      command -v setfacl >/dev/null || apt_install acl
      if setfacl -m "u:$user:x" "$d" 2>/dev/null; then
        log "granted $user search (x) permission on $d via ACL"
      else
        warn "setfacl failed on $d; falling back to chmod o+x"
        chmod o+x "$d"
      fi
    fi
  done
}

# --------------------------------------------------------------------------
# apt helpers (Debian)
# --------------------------------------------------------------------------
# pkg_installed PKG: Debian package PKG is installed.
pkg_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

_DEVSTACK_APT_UPDATED=""
# apt_install PKG...: install the missing ones (no recommends). Runs
# `apt-get update` at most once per run, and only if something is missing.
# While installing, a temporary /usr/sbin/policy-rc.d (if none exists)
# stops Debian maintainer scripts from starting system daemons on their
# default ports; packages newly installed here get their system service
# stopped and disabled afterwards (we run our own instances).
apt_install() {
  local pkg missing=() policy=/usr/sbin/policy-rc.d made_policy=""
  for pkg in "$@"; do
    pkg_installed "$pkg" || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  [[ $EUID -eq 0 ]] || die "need root to apt-get install ${missing[*]} (or install them yourself)"
  log "apt-get install ${missing[*]}"
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\n# temporary, created by DeviceFleet devstack\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
  fi
  local rc=0
  {
    if [[ -z "$_DEVSTACK_APT_UPDATED" ]]; then
      DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
      _DEVSTACK_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  } || rc=$?
  if [[ -n "$made_policy" ]]; then rm -f "$policy"; fi
  ((rc == 0)) || die "apt-get install ${missing[*]} failed (exit $rc)"
  for pkg in "${missing[@]}"; do
    _disable_system_service "$pkg"
  done
}

# _disable_system_service PKG: stop/disable the distro daemon of a package
# we just installed, if it has one (mosquitto, prometheus, postgresql).
_disable_system_service() {
  local svc
  case "$1" in
    mosquitto) svc=mosquitto ;;
    prometheus) svc=prometheus ;;
    postgresql-[0-9]*) svc=postgresql ;;
    *) return 0 ;;
  esac
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
    systemctl disable --now "$svc" >/dev/null 2>&1 || true
  elif [[ -x "/etc/init.d/$svc" ]]; then
    if "/etc/init.d/$svc" status >/dev/null 2>&1; then
      "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
    fi
    if command -v update-rc.d >/dev/null; then
      update-rc.d "$svc" disable >/dev/null 2>&1 || true
    fi
  fi
  return 0
}

# --------------------------------------------------------------------------
# Components
# --------------------------------------------------------------------------
# fn_name NAME: shell-safe function prefix for component NAME
# (e.g. kube-apiserver -> kube_apiserver).
fn_name() { printf '%s' "${1//-/_}"; }

# load_components: source components/*.sh for every known component.
load_components() {
  local c
  for c in "${DEVSTACK_COMPONENTS[@]}"; do
    # shellcheck source=/dev/null
    source "$DEVSTACK_DIR/components/$c.sh"
  done
}

# select_components ARGS...: set SELECTED to ARGS (validated) or to all
# components, in DEVSTACK_COMPONENTS order.
select_components() {
  local c a ok
  SELECTED=()
  for a in "$@"; do
    ok=""
    for c in "${DEVSTACK_COMPONENTS[@]}"; do
      if [[ "$a" == "$c" ]]; then ok=1; fi
    done
    [[ -n "$ok" ]] || die "unknown component '$a' (known: ${DEVSTACK_COMPONENTS[*]})"
  done
  for c in "${DEVSTACK_COMPONENTS[@]}"; do
    if [[ $# -eq 0 ]]; then
      SELECTED+=("$c")
      continue
    fi
    for a in "$@"; do
      if [[ "$a" == "$c" ]]; then
        SELECTED+=("$c")
        break
      fi
    done
  done
  return 0
}

# with_lock: serialize up/down runs against the same state dir.
with_lock() {
  mkdir -p "$DEVSTACK_STATE"
  exec 9>"$DEVSTACK_STATE/.devstack.lock"
  if ! flock -w 300 9; then
    die "another devstack command holds $DEVSTACK_STATE/.devstack.lock"
  fi
}
