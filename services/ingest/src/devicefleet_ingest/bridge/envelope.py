"""MQTT message → ``raw_iot_data`` record, as pure functions (no client, no clock)."""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from devicefleet_common.schemas import MESSAGE_ID_HEADER, RawEnvelope, content_message_id
from devicefleet_common.topics import parse_topic

UNKNOWN_DEVICE = "unknown"
PayloadEncoding = Literal["json", "text", "base64"]
# librdkafka refuses a record over its message.max.bytes (1,000,000 by default) when it is
# produced; the bridge checks first, leaving room for the key and headers.
MAX_RECORD_BYTES = 1_000_000 - 16 * 1024
KEPT_PAYLOAD_BYTES = 4096
PAYLOAD_TOO_LARGE = "payload_too_large"


def topic_device_id(topic: str) -> str:
    """Device of a known layout; otherwise the second segment, so the processor can still
    dead-letter the message under a device instead of the bridge dropping it."""
    if info := parse_topic(topic):
        return info.device_id
    parts = topic.split("/")
    return parts[1] if len(parts) > 1 and parts[1] else UNKNOWN_DEVICE


def decode_payload(payload: bytes) -> tuple[Any, PayloadEncoding]:
    """(value, payload_encoding): parsed JSON, else UTF-8 text, else base64."""
    try:
        return orjson.loads(payload), "json"
    except orjson.JSONDecodeError:
        pass
    try:
        return payload.decode("utf-8"), "text"
    except UnicodeDecodeError:
        return base64.b64encode(payload).decode("ascii"), "base64"


def device_timestamp(value: Any) -> float | None:
    """Epoch seconds from an ISO 8601 string (naive means UTC) or an epoch number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an integer beyond float range
            return None
        # The envelope refuses inf/NaN: returning them would stop the bridge on this message.
        return seconds if math.isfinite(seconds) else None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    return None


def property_value(properties: Sequence[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in properties if key == name), None)


def mqtt_envelope(
    topic: str,
    payload: bytes,
    user_properties: Sequence[tuple[str, str]],
    received_at: float,
) -> RawEnvelope:
    device_id = topic_device_id(topic)
    message_id = property_value(user_properties, MESSAGE_ID_HEADER) or content_message_id(
        device_id, topic, payload
    )
    value, encoding = decode_payload(payload)
    timestamp = device_timestamp(value.get("timestamp")) if isinstance(value, dict) else None
    return RawEnvelope(
        message_id=message_id,
        device_id=device_id,
        original_topic=topic,
        payload=value,
        payload_encoding=encoding,
        timestamp=received_at if timestamp is None else timestamp,
        received_at=received_at,
        source="mqtt",
    )


def too_large_envelope(envelope: RawEnvelope, payload: bytes) -> RawEnvelope:
    """The dead letter of a message too large for a Kafka record: its envelope with the head
    of the payload (base64), enough to find the sender and recognise the message."""
    head = base64.b64encode(payload[:KEPT_PAYLOAD_BYTES]).decode("ascii")
    return envelope.model_copy(update={"payload": head, "payload_encoding": "base64"})
