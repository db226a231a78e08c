"""Prometheus instruments (default registry, served on the status server's /metrics).

Module-level because a registry accepts each name once per process.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter(
    "simulator_messages_total",
    "Simulated messages by outcome: generated, acknowledged, duplicate_acknowledged, rejected, "
    "dropped, duplicated, malformed, buffered (entered the buffer), buffer_overflow",
    ["outcome"],
)
PUBLISH_DURATION = Histogram(
    "simulator_publish_duration_seconds",
    "Duration of one publish attempt (until PUBACK or HTTP response)",
    ["transport"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RETRIES = Counter(
    "retry_attempts_total",
    "Attempts made after a transient failure (first tries excluded)",
    ["transport"],
)
BREAKER_STATE = Gauge(
    "circuit_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open", ["breaker"]
)
BREAKER_FAILURES = Counter(
    "circuit_breaker_failures_total", "Failed calls counted by the circuit breaker", ["breaker"]
)
BREAKER_TRANSITIONS = Counter(
    "circuit_breaker_transitions_total",
    "Circuit breaker state transitions",
    ["breaker", "from_state", "to_state"],
)
BUFFERED = Gauge("simulator_buffered_messages", "Messages waiting in the buffer")
DEVICES = Gauge("simulator_devices", "Devices simulated by this process")
MQTT_CONNECT_REFUSED = Counter(
    "simulator_mqtt_connect_refused_total",
    "CONNACKs refusing the connection, by reason (bad credentials, not authorized...)",
    ["reason"],
)
