# shellcheck shell=sh
# devstack/kafka/tools.sh - the Kafka CLI tools the Maven jars provide (the tarball's
# bin/kafka-TOOL.sh) and their main classes. POSIX sh, sourced by devstack/kafka/cli.sh and, in
# the local kafka image (devstack/images/kafka), by kafka-cli.sh and the Containerfile.

# shellcheck disable=SC2034  # used by the scripts that source this file
KAFKA_TOOLS="topics console-producer console-consumer consumer-groups get-offsets delete-records metadata-quorum broker-api-versions configs storage"

# kafka_tool_class TOOL: print TOOL's main class; fails for an unknown TOOL.
kafka_tool_class() {
  case "$1" in
    topics) echo org.apache.kafka.tools.TopicCommand ;;
    console-producer) echo kafka.tools.ConsoleProducer ;;
    console-consumer) echo org.apache.kafka.tools.consumer.ConsoleConsumer ;;
    consumer-groups) echo org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
    get-offsets) echo org.apache.kafka.tools.GetOffsetShell ;;
    delete-records) echo org.apache.kafka.tools.DeleteRecordsCommand ;;
    metadata-quorum) echo org.apache.kafka.tools.MetadataQuorumCommand ;;
    broker-api-versions) echo kafka.admin.BrokerApiVersionsCommand ;;
    configs) echo kafka.admin.ConfigCommand ;;
    storage) echo kafka.tools.StorageTool ;;
    *) return 1 ;;
  esac
}
