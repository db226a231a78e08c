"""Bridge metrics, served on ``metrics_port``."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter("bridge_messages", "MQTT messages by outcome", ["outcome"])
for _outcome in ("forwarded", "dead_lettered", "failed"):
    MESSAGES.labels(_outcome)
PRODUCE_DURATION = Histogram(
    "bridge_produce_duration_seconds", "Time from produce to the broker's acknowledgement"
)
MQTT_CONNECTED = Gauge("bridge_mqtt_connected", "1 while connected to the MQTT broker")
# Connected is not enough: a new session receives nothing until the broker granted the
# subscriptions (and an ACL may refuse them), so readiness checks wait for this one.
MQTT_SUBSCRIBED = Gauge(
    "bridge_mqtt_subscribed",
    "1 while connected with every subscription granted; 0 when refused or disconnected",
)
UNACKED = Gauge("bridge_unacked_messages", "MQTT messages received and not yet acknowledged")
MQTT_CONNECT_REFUSED = Counter(
    "bridge_mqtt_connect_refused",
    "CONNACKs refusing the connection, by reason (bad credentials, not authorized...)",
    ["reason"],
)
