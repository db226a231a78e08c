#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# devstack/kafka/cli.sh TOOL [ARGS...] - run a Kafka CLI tool from the jars
# that devstack/install.sh put into $DEVSTACK_CACHE (no Kafka tarball needed).
#
#   devstack/kafka/cli.sh topics --bootstrap-server 127.0.0.1:19092 --list
#   devstack/kafka/cli.sh console-producer --bootstrap-server 127.0.0.1:19092 --topic t
#   devstack/kafka/cli.sh console-consumer --bootstrap-server 127.0.0.1:19092 --topic t --from-beginning
#
# TOOL is one of the names below (same as bin/kafka-TOOL.sh of the tarball).
# KAFKA_TOOLS_HEAP (default 256m) sets the JVM heap.
set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=../components/kafka.sh
source "$DEVSTACK_DIR/components/kafka.sh"
# shellcheck source=tools.sh
source "$DEVSTACK_DIR/kafka/tools.sh"

usage() {
  cat >&2 <<USAGE
usage: $0 TOOL [ARGS...]
tools: $KAFKA_TOOLS
USAGE
  exit 2
}

[[ $# -ge 1 ]] || usage
tool="$1"
shift
case "$tool" in
  -h | --help) usage ;;
esac
cls="$(kafka_tool_class "$tool")" || { echo "unknown tool: $tool" >&2; usage; }

kafka_installed || die "Kafka is not installed; run devstack/install.sh kafka"
exec java "-Xmx${KAFKA_TOOLS_HEAP:-256m}" -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
  -Djava.awt.headless=true \
  "-Dlog4j.configuration=file:$DEVSTACK_DIR/kafka/tools-log4j.properties" \
  -cp "$KAFKA_HOME/libs/*" "$cls" "$@"
