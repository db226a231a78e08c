#!/usr/bin/env bash
# bench/tools.sh: idempotently install the load generators and raw baselines the benchmarks
# drive, then print `NAME=PATH` lines (the CLI reads them).
#   vegeta            HTTP load generator (Go module, pinned) for P1
#   mosquitto_pub/sub MQTT publisher and the raw pipe's reader (Debian mosquitto-clients), P2
#   kcat              the raw pipe's Kafka writer (Debian kcat), P2
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../devstack/lib.sh
source "$BENCH_DIR/../devstack/lib.sh"
# shellcheck source=../devstack/k8s/lib.sh
source "$BENCH_DIR/../devstack/k8s/lib.sh"

VEGETA_VERSION=v12.12.0
VEGETA_HOME="$DEVSTACK_CACHE/tools/vegeta-$VEGETA_VERSION"

k8s_go_install vegeta github.com/tsenart/vegeta/v12 "$VEGETA_VERSION" "$VEGETA_HOME/bin" "-s -w" >&2
apt_install mosquitto-clients kcat >&2

printf 'vegeta=%s\n' "$VEGETA_HOME/bin/vegeta"
printf 'mosquitto_pub=%s\n' "$(command -v mosquitto_pub)"
printf 'mosquitto_sub=%s\n' "$(command -v mosquitto_sub)"
printf 'kcat=%s\n' "$(command -v kcat)"
