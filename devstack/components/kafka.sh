# shellcheck shell=bash
# devstack component: Apache Kafka (KRaft, single combined broker+controller)
# from Maven Central jars. Sourced by devstack scripts after lib.sh.

KAFKA_VERSION=3.9.2                       # keep in sync with kafka/pom.xml
KAFKA_HOME="$DEVSTACK_CACHE/kafka-$KAFKA_VERSION"
KAFKA_HEAP="${KAFKA_HEAP:-512m}"

_kafka_pom_hash() { sha256sum "$DEVSTACK_DIR/kafka/pom.xml" | cut -d' ' -f1; }

# shellcheck source=../tls.sh
source "$DEVSTACK_DIR/tls.sh"

kafka_ports() { echo "$KAFKA_PORT $KAFKA_TLS_PORT $KAFKA_MTLS_PORT $KAFKA_CONTROLLER_PORT"; }
kafka_address() {
  echo "127.0.0.1:$KAFKA_PORT (tls :$KAFKA_TLS_PORT, mtls :$KAFKA_MTLS_PORT," \
    "controller :$KAFKA_CONTROLLER_PORT)"
}

# _kafka_tls_keystore KEYSTORE: the TLS listener's PEM keystore (private key, then the
# server certificate and the CA: the chain clients verify).
_kafka_tls_keystore() {
  local keystore="$1"
  tls_server_cert kafka "DNS:localhost,IP:127.0.0.1"
  (
    umask 077
    cat "$TLS_DIR/kafka.key" "$TLS_DIR/kafka.crt" "$TLS_DIR/ca.crt" >"$keystore.tmp"
  )
  mv -f "$keystore.tmp" "$keystore"
  # A client certificate for the mutual TLS listener (tests, and services run by hand).
  tls_client_cert kafka-client devicefleet-kafka-client
}

kafka_installed() {
  [[ -f "$KAFKA_HOME/.installed" && "$(cat "$KAFKA_HOME/.installed")" == "$(_kafka_pom_hash)" ]] &&
    command -v java >/dev/null
}

kafka_install() {
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_install maven
  log "kafka: resolving Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_HOME/libs"
  rm -rf "$KAFKA_HOME/libs.tmp"
  mkdir -p "$KAFKA_HOME"
  if ! mvn -B -q --no-transfer-progress -Dstyle.color=never -f "$DEVSTACK_DIR/kafka/pom.xml" \
    "-Dmaven.repo.local=$DEVSTACK_CACHE/m2" \
    dependency:copy-dependencies "-DoutputDirectory=$KAFKA_HOME/libs.tmp" \
    >"$KAFKA_HOME/mvn.log" 2>&1; then
    tail -n 30 "$KAFKA_HOME/mvn.log" >&2
    die "kafka: maven could not resolve the Kafka jars (full output: $KAFKA_HOME/mvn.log)"
  fi
  [[ -f "$KAFKA_HOME/libs.tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] ||
    die "kafka: kafka_2.13-$KAFKA_VERSION.jar missing after resolve"
  rm -rf "$KAFKA_HOME/libs"
  mv "$KAFKA_HOME/libs.tmp" "$KAFKA_HOME/libs"
  _kafka_pom_hash >"$KAFKA_HOME/.installed"
  log "kafka: installed $(find "$KAFKA_HOME/libs" -name '*.jar' | wc -l) jars"
}

_kafka_java() {
  # _kafka_java HEAP MAIN_CLASS ARGS...: run a JVM on the Kafka classpath.
  local heap="$1"
  shift
  java "-Xms$heap" "-Xmx$heap" -Djava.awt.headless=true -cp "$KAFKA_HOME/libs/*" "$@"
}

kafka_start() {
  local data conf cluster_id
  data="$(data_dir kafka)"
  conf="$(conf_dir kafka)"
  mkdir -p "$data/logs" "$conf"
  _kafka_tls_keystore "$conf/tls-keystore.pem"
  render_template "$DEVSTACK_DIR/kafka/server.properties" "$conf/server.properties" \
    "KAFKA_LOG_DIRS=$data/logs" "KAFKA_TLS_KEYSTORE=$conf/tls-keystore.pem" \
    "KAFKA_TLS_TRUSTSTORE=$TLS_DIR/ca.crt"
  # Cluster id: generated once and kept in the state dir; storage formatted once.
  if [[ ! -s "$data/cluster-id" ]]; then
    _kafka_java 128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
      "-Dlog4j.configuration=file:$DEVSTACK_DIR/kafka/tools-log4j.properties" \
      kafka.tools.StorageTool random-uuid >"$data/cluster-id.tmp"
    mv "$data/cluster-id.tmp" "$data/cluster-id"
  fi
  cluster_id="$(cat "$data/cluster-id")"
  if [[ ! -f "$data/logs/meta.properties" ]]; then
    log "kafka: formatting storage in $data/logs (cluster id $cluster_id)"
    _kafka_java 128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
      "-Dlog4j.configuration=file:$DEVSTACK_DIR/kafka/tools-log4j.properties" \
      kafka.tools.StorageTool format -t "$cluster_id" -c "$conf/server.properties" \
      >>"$(log_file kafka)" 2>&1 || die "kafka: storage format failed, see $(log_file kafka)"
  fi
  start_process kafka "$(log_file kafka)" \
    java "-Xms$KAFKA_HEAP" "-Xmx$KAFKA_HEAP" -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
    -Djava.awt.headless=true \
    "-Dlog4j.configuration=file:$DEVSTACK_DIR/kafka/log4j.properties" \
    "-Dkafka.logs.dir=$DEVSTACK_LOGS" \
    -cp "$KAFKA_HOME/libs/*" kafka.Kafka "$conf/server.properties"
}

# Proves the broker really serves: BrokerApiVersionsCommand bootstraps, sends
# a Metadata request and then ApiVersions to every broker in the answer; a
# fenced (not yet ready) broker is not listed in metadata.
kafka_healthy() {
  port_in_use "$KAFKA_PORT" || return 1
  "$DEVSTACK_DIR/kafka/cli.sh" broker-api-versions \
    --bootstrap-server "127.0.0.1:$KAFKA_PORT" 2>/dev/null |
    grep -q "^127.0.0.1:$KAFKA_PORT (id: 1 rack: null) -> ("
}

kafka_wait() {
  wait_for kafka "${KAFKA_START_TIMEOUT:-90}" port_in_use "$KAFKA_PORT" &&
    wait_for kafka "${KAFKA_START_TIMEOUT:-90}" kafka_healthy
}

kafka_bootstrap() { :; }

kafka_stop() { stop_process kafka 60; }
