"""MQTT v5 → Kafka with at-least-once delivery.

paho's network thread only queues messages; the main thread produces, polls the producer and
acks each MQTT message (manual acks, in receive order) after Kafka acknowledged its record.
An unacked message stays in the broker's persistent session, so a crash or a Kafka outage
loses nothing: the broker redelivers it to the next connection (duplicates are removed
downstream by message id).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from opentelemetry import trace
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from devicefleet_common.kafka import on_error_logger, producer_config
from devicefleet_common.logging import get_logger
from devicefleet_common.metrics import Readiness
from devicefleet_common.mqtt import REFUSED_CONNACK, broker_label, configure_client
from devicefleet_common.schemas import (
    DLQ_DETAIL_HEADER,
    DLQ_REASON_HEADER,
    DLQ_STAGE_HEADER,
    MESSAGE_ID_HEADER,
)
from devicefleet_common.topics import SUBSCRIPTIONS
from devicefleet_common.tracing import extract_pairs, inject_kafka_headers
from devicefleet_ingest.bridge import metrics
from devicefleet_ingest.bridge.acks import AckQueue
from devicefleet_ingest.bridge.envelope import (
    KEPT_PAYLOAD_BYTES,
    MAX_RECORD_BYTES,
    PAYLOAD_TOO_LARGE,
    mqtt_envelope,
    too_large_envelope,
)
from devicefleet_ingest.bridge.settings import BridgeSettings
from devicefleet_ingest.producer import Headers

log = get_logger("devicefleet.bridge")
tracer = trace.get_tracer("devicefleet.bridge")

_RETRY_DELAY_SECONDS = 1.0
_DRAIN_BATCH = 1000


@dataclass(frozen=True)
class Inbound:
    generation: int  # connection the message arrived on; its mid means nothing on another
    mid: int
    qos: int
    topic: str
    payload: bytes
    user_properties: list[tuple[str, str]]
    received_at: float


@dataclass(frozen=True)
class Record:
    topic: str  # the raw topic, or the dead-letter topic for a message Kafka cannot take
    key: bytes
    value: bytes
    headers: Headers
    message_id: str
    token: int | None  # AckQueue token; None for QoS 0 (nothing to ack)
    generation: int


NOT_CONNECTED = "not connected to the MQTT broker"


class Bridge:
    def __init__(self, settings: BridgeSettings, readiness: Readiness | None = None) -> None:
        self._settings = settings
        self._readiness = readiness or Readiness(NOT_CONNECTED)
        self._inbox: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
        self._acks = AckQueue()
        self._retries: list[tuple[float, Record]] = []
        self._generation = 0  # bumped by the network thread on every disconnect
        self._accepting = True
        self._stop = threading.Event()
        self._producer = Producer(
            producer_config(
                settings.kafka_bootstrap_servers,
                settings.client_id,
                # Never give up on a record: while Kafka is down, messages wait unacked in
                # the MQTT session (bounded by receive_maximum) instead of being dropped.
                **settings.kafka_security_config(),
                **{"message.timeout.ms": 0, "error_cb": on_error_logger("bridge")},
            )
        )
        self._client = self._mqtt_client()

    def _mqtt_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._settings.client_id,
            protocol=mqtt.MQTTv5,
        )
        client.manual_ack_set(True)
        configure_client(client, self._settings)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self._settings.session_expiry_seconds
        properties.ReceiveMaximum = self._settings.receive_maximum
        self._client.connect_async(
            self._settings.mqtt_host,
            self._settings.mqtt_port,
            self._settings.mqtt_keepalive,
            clean_start=False,
            properties=properties,
        )
        self._client.loop_start()
        generation = self._generation
        while not self._stop.is_set():
            if generation != self._generation:
                generation = self._generation
                self._acks.clear()
            self._forward_inbox()
            self._producer.poll(0.05)
            metrics.UNACKED.set(len(self._acks) + self._inbox.qsize())

    def close(self) -> None:
        """Flush Kafka, send the PUBACKs that earned, disconnect keeping the session."""
        self._accepting = False  # later messages stay unacked in the session
        self._forward_inbox()
        unflushed = self._producer.flush(self._settings.shutdown_flush_seconds)
        log.info("kafka flushed", unflushed=unflushed, unacked=len(self._acks))
        # PUBACKs queued by the delivery callbacks go out before DISCONNECT; the session
        # (subscriptions and unacked messages) stays for the next start.
        self._client.disconnect()
        self._client.loop_stop()
        metrics.MQTT_CONNECTED.set(0)
        self._subscription_state(NOT_CONNECTED)

    # --- paho network thread ---------------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            # paho retries with backoff; every refusal is counted and said (bad credentials
            # do not fix themselves), with whom we tried to connect, never the password.
            metrics.MQTT_CONNECT_REFUSED.labels(str(reason_code)).inc()
            self._subscription_state(f"the MQTT broker refused the connection: {reason_code}")
            level = log.error if int(reason_code.value) in REFUSED_CONNACK else log.warning
            level(
                "mqtt connect refused",
                reason_code=str(reason_code),
                broker=broker_label(self._settings),
            )
            return
        metrics.MQTT_CONNECTED.set(1)
        self._subscription_state("connected; the MQTT broker has not granted the subscriptions yet")
        log.info(
            "mqtt connected",
            reason_code=str(reason_code),
            session_present=flags.session_present,
            broker=broker_label(self._settings),
        )
        # Idempotent for a resumed session; needed for a new one.
        client.subscribe([(topic, SubscribeOptions(qos=1)) for topic in SUBSCRIPTIONS])

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        granted = dict(zip(SUBSCRIPTIONS, (str(rc) for rc in reason_codes), strict=False))
        if any(rc.is_failure for rc in reason_codes):
            self._subscription_state(f"the MQTT broker refused subscriptions: {granted}")
            log.error("mqtt subscription refused", granted=granted)
        else:
            self._subscription_state(None)
            log.info("mqtt subscribed", granted=granted)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._generation += 1
        metrics.MQTT_CONNECTED.set(0)
        self._subscription_state(NOT_CONNECTED)
        level = log.warning if reason_code.is_failure else log.info
        level("mqtt disconnected", reason_code=str(reason_code))

    def _subscription_state(self, why_not: str | None) -> None:
        """Why the bridge is not subscribed, or None once it is. Until the broker grants the
        subscriptions, what devices publish reaches no one: the gauge and /ready say so."""
        metrics.MQTT_SUBSCRIBED.set(0 if why_not else 1)
        self._readiness.reason = why_not

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if not self._accepting:
            return
        user_properties = getattr(message.properties, "UserProperty", None) or []
        self._inbox.put(
            Inbound(
                generation=self._generation,
                mid=message.mid,
                qos=message.qos,
                topic=message.topic,
                payload=bytes(message.payload),
                user_properties=list(user_properties),
                received_at=time.time(),
            )
        )

    # --- main thread -----------------------------------------------------------------------

    def _forward_inbox(self) -> None:
        now = time.monotonic()
        due = [record for at, record in self._retries if at <= now]
        self._retries = [(at, record) for at, record in self._retries if at > now]
        for record in due:
            self._produce(record)
        for _ in range(_DRAIN_BATCH):
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if item.generation == self._generation:  # else: the broker redelivers it
                self._produce(self._record(item))

    def _record(self, item: Inbound) -> Record:
        envelope = mqtt_envelope(item.topic, item.payload, item.user_properties, item.received_at)
        # Continue the device's trace (MQTT user properties) into the Kafka headers.
        with tracer.start_as_current_span(
            "bridge",
            context=extract_pairs(item.user_properties),
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": self._settings.raw_topic,
                "mqtt.topic": item.topic,
                "message.id": envelope.message_id,
            },
        ):
            headers: Headers = [
                *inject_kafka_headers(),
                (MESSAGE_ID_HEADER, envelope.message_id.encode()),
            ]
        log.debug(
            "message received",
            message_id=envelope.message_id,
            device_id=envelope.device_id,
            topic=item.topic,
        )
        topic, value = self._settings.raw_topic, envelope.model_dump_json().encode()
        if len(value) > MAX_RECORD_BYTES:
            # Producing it would fail (and used to stop the bridge on every redelivery): it
            # goes to the dead-letter topic with its head, acknowledged, counted and logged.
            detail = (
                f"envelope of {len(value)} bytes exceeds {MAX_RECORD_BYTES} "
                f"(payload {len(item.payload)} bytes, the first {KEPT_PAYLOAD_BYTES} kept)"
            )
            log.warning(
                "message dead-lettered",
                reason=PAYLOAD_TOO_LARGE,
                detail=detail,
                message_id=envelope.message_id,
                topic=item.topic,
            )
            topic = self._settings.dead_letter_topic
            value = too_large_envelope(envelope, item.payload).model_dump_json().encode()
            headers += [
                (DLQ_REASON_HEADER, PAYLOAD_TOO_LARGE.encode()),
                (DLQ_STAGE_HEADER, b"bridge"),
                (DLQ_DETAIL_HEADER, detail.encode()),
            ]
        return Record(
            topic=topic,
            key=envelope.device_id.encode(),
            value=value,
            headers=headers,
            message_id=envelope.message_id,
            token=self._acks.add(item.mid) if item.qos > 0 else None,
            generation=item.generation,
        )

    def _produce(self, record: Record) -> None:
        started = time.perf_counter()

        def on_delivery(err: KafkaError | None, _: Message) -> None:
            self._delivered(record, err, time.perf_counter() - started)

        while True:
            try:
                self._producer.produce(
                    record.topic,
                    key=record.key,
                    value=record.value,
                    headers=record.headers,
                    on_delivery=on_delivery,
                )
                return
            except BufferError:  # local queue full: serve callbacks until there is room
                self._producer.poll(0.1)
            except KafkaException as exc:
                # Refused before sending (e.g. a record over message.max.bytes): the bridge
                # must stay up; the message stays unacked and is retried like a failed one.
                self._delivered(record, exc.args[0], time.perf_counter() - started)
                return

    def _delivered(self, record: Record, err: KafkaError | None, seconds: float) -> None:
        if err is not None:
            # Only permanent errors get here (no timeout): keep the message unacked and
            # retry, so it is never lost; the failed counter and unacked gauge show it.
            metrics.MESSAGES.labels("failed").inc()
            log.error("kafka delivery failed", message_id=record.message_id, error=str(err))
            self._retries.append((time.monotonic() + _RETRY_DELAY_SECONDS, record))
            return
        dead = record.topic == self._settings.dead_letter_topic
        metrics.MESSAGES.labels("dead_lettered" if dead else "forwarded").inc()
        metrics.PRODUCE_DURATION.observe(seconds)
        log.debug("message forwarded", message_id=record.message_id)
        if record.token is None or record.generation != self._generation:
            return
        for mid in self._acks.delivered(record.token):
            self._client.ack(mid, 1)
