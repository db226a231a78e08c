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
case "$tool" in
  topics) cls=org.apache.kafka.tools.TopicCommand ;;
  console-producer) cls=kafka.tools.ConsoleProducer ;;
  console-consumer) cls=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
  consumer-groups) cls=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
  get-offsets) cls=org.apache.kafka.tools.GetOffsetShell ;;
  delete-records) cls=org.apache.kafka.tools.DeleteRecordsCommand ;;
  metadata-quorum) cls=org.apache.kafka.tools.MetadataQuorumCommand ;;
  broker-api-versions) cls=kafka.admin.BrokerApiVersionsCommand ;;
  configs) cls=kafka.admin.ConfigCommand ;;
  storage) cls=kafka.tools.StorageTool ;;
  *)
    echo "unknown tool '$tool'; tools: topics console-producer console-consumer consumer-groups" \
      "get-offsets delete-records metadata-quorum broker-api-versions configs storage" >&2
    exit 2
    ;;
esac
exec java "-Xmx${KAFKA_TOOLS_HEAP:-256m}" -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
  -Djava.awt.headless=true -Dlog4j.configuration=file:/opt/kafka/config/tools-log4j.properties \
  -cp "/opt/kafka/libs/*" "$cls" "$@"
