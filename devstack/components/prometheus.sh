# shellcheck shell=bash
# devstack component: Prometheus (with promtool) from Debian, our own config
# and TSDB in the state dir. Sourced by devstack scripts after lib.sh.

PROMETHEUS_BIN=/usr/bin/prometheus

prometheus_ports() { echo "$PROMETHEUS_PORT"; }
prometheus_address() { echo "http://127.0.0.1:$PROMETHEUS_PORT"; }
prometheus_rules_dir() { printf '%s/rules' "$(conf_dir prometheus)"; }

prometheus_installed() {
  [[ -x "$PROMETHEUS_BIN" ]] && command -v promtool >/dev/null && command -v curl >/dev/null
}

# Debian's prometheus package ships promtool too. --no-install-recommends
# (see apt_install) skips prometheus-node-exporter, which would otherwise
# want to run on :9100.
# File-based service discovery targets (simulators started by platform.sh).
prometheus_sd_dir() { printf '%s/sd' "$(conf_dir prometheus)"; }

prometheus_install() { apt_install prometheus curl; }

# The chart's Prometheus rules: the local Prometheus evaluates the same files as the
# kube-prometheus-stack one, so their recording rules and alerts are live locally.
PROMETHEUS_CHART_RULES="$DEVSTACK_REPO/charts/devicefleet-monitoring/rules"

# prometheus_configure: copy the chart's rule files into rules/chart/ (checked with
# promtool first) and render the config (checked too). Idempotent.
prometheus_configure() {
  local conf rules sd staged
  conf="$(conf_dir prometheus)"
  rules="$(prometheus_rules_dir)"
  sd="$(prometheus_sd_dir)"
  mkdir -p "$conf" "$(data_dir prometheus)" "$rules/chart" "$sd"
  # Simulators come and go: platform.sh writes their targets here, and
  # Prometheus re-reads the file on change (no reload needed).
  [ -f "$sd/simulators.json" ] || echo '[]' >"$sd/simulators.json"
  staged="$(mktemp -d "$conf/rules-staged.XXXXXX")"
  if compgen -G "$PROMETHEUS_CHART_RULES/*.yaml" >/dev/null; then
    cp "$PROMETHEUS_CHART_RULES"/*.yaml "$staged/"
    promtool check rules "$staged"/*.yaml >/dev/null || {
      rm -rf "$staged"
      die "prometheus: invalid rules in $PROMETHEUS_CHART_RULES (promtool check rules)"
    }
  fi
  rm -rf "$rules/chart"
  mv "$staged" "$rules/chart"
  chmod 755 "$rules/chart"
  render_template "$DEVSTACK_DIR/prometheus/prometheus.yml" "$conf/prometheus.yml" \
    "PROMETHEUS_SD_DIR=$sd" "PROMETHEUS_RULES_DIR=$rules"
  promtool check config "$conf/prometheus.yml" >/dev/null ||
    die "prometheus: generated $conf/prometheus.yml is invalid (promtool check config)"
}

# What a (re)load reads: the config and every rule file, names and contents.
prometheus_loaded_digest() {
  local conf
  conf="$(conf_dir prometheus)"
  {
    cat "$conf/prometheus.yml" 2>/dev/null || true
    find "$conf/rules" -maxdepth 2 -type f \( -name '*.yml' -o -name '*.yaml' \) \
      -exec sha256sum {} + 2>/dev/null | sort || true
  } | sha256sum
}

prometheus_start() {
  local conf data
  conf="$(conf_dir prometheus)"
  data="$(data_dir prometheus)"
  prometheus_configure
  start_process prometheus "$(log_file prometheus)" "$PROMETHEUS_BIN" \
    "--config.file=$conf/prometheus.yml" \
    "--web.listen-address=127.0.0.1:$PROMETHEUS_PORT" \
    "--storage.tsdb.path=$data" \
    --web.enable-lifecycle
}

prometheus_healthy() {
  curl -fsS --max-time 3 "http://127.0.0.1:$PROMETHEUS_PORT/-/ready" >/dev/null
}

prometheus_wait() { wait_for prometheus "${PROMETHEUS_START_TIMEOUT:-30}" prometheus_healthy; }

# A running Prometheus picks up changes of the config template or the chart's rules on
# every `up.sh` (make up / make test): re-render, and reload when anything changed.
prometheus_bootstrap() {
  local before
  before="$(prometheus_loaded_digest)"
  prometheus_configure
  if [[ "$(prometheus_loaded_digest)" != "$before" ]]; then
    curl -fsS --max-time 30 -X POST "http://127.0.0.1:$PROMETHEUS_PORT/-/reload" >/dev/null ||
      die "prometheus: reload failed (see $(log_file prometheus))"
    log "prometheus: configuration or rules changed, reloaded"
  fi
}

prometheus_stop() { stop_process prometheus 30; }
