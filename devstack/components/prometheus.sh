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

prometheus_start() {
  local conf data sd
  conf="$(conf_dir prometheus)"
  data="$(data_dir prometheus)"
  sd="$(prometheus_sd_dir)"
  mkdir -p "$conf" "$data" "$(prometheus_rules_dir)" "$sd"
  # Simulators come and go: platform.sh writes their targets here, and
  # Prometheus re-reads the file on change (no reload needed).
  [ -f "$sd/simulators.json" ] || echo '[]' >"$sd/simulators.json"
  render_template "$DEVSTACK_DIR/prometheus/prometheus.yml" "$conf/prometheus.yml" \
    "PROMETHEUS_SD_DIR=$sd" "PROMETHEUS_RULES_DIR=$(prometheus_rules_dir)"
  promtool check config "$conf/prometheus.yml" >/dev/null ||
    die "prometheus: generated $conf/prometheus.yml is invalid (promtool check config)"
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

prometheus_bootstrap() { :; }

prometheus_stop() { stop_process prometheus 30; }
