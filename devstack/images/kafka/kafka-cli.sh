#!/usr/bin/env bash
# kafka-cli.sh TOOL [ARGS...], or as kafka-TOOL.sh [ARGS...] (the symlinks in /opt/kafka/bin):
# a Kafka CLI tool of localhost/devicefleet/kafka, the image's counterpart of the tarball's
# bin/kafka-*.sh (same tools as devstack/kafka/cli.sh), e.g.
#   kafka-topics.sh --bootstrap-server localhost:9092 --list
# KAFKA_TOOLS_HEAP (default 256m) sets the JVM heap.
set -euo pipefail

tool="$(basename "$0")"
if [[ "$tool" == kafka-cli.sh ]]; then
  [[ $# -ge 1 ]] || { echo "usage: kafka-cli.sh TOOL [ARGS...]" >&2; exit 2; }
  tool="$1"
  shift
fi
tool="${tool#kafka-}"
tool="${tool%.sh}"
# shellcheck source=/dev/null  # devstack/kafka/tools.sh, copied into the image
. /opt/kafka/bin/kafka-tools.sh
if ! cls="$(kafka_tool_class "$tool")"; then
  echo "unknown tool '$tool'; tools: $KAFKA_TOOLS" >&2
  exit 2
fi
exec java "-Xmx${KAFKA_TOOLS_HEAP:-256m}" -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
  -Djava.awt.headless=true -Dlog4j.configuration=file:/opt/kafka/config/tools-log4j.properties \
  -cp "/opt/kafka/libs/*" "$cls" "$@"
