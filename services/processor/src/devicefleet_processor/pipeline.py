"""One raw Kafka record in, one decoded or dead-letter record out."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pydantic
from confluent_kafka import Message

from devicefleet_common.kafka import KafkaHeaderList, dead_letter_headers, message_headers
from devicefleet_common.schemas import MESSAGE_ID_HEADER, RawEnvelope
from devicefleet_processor.decoders import DecodeError, check_ids, check_timestamp, decode
from devicefleet_processor.health import HealthScorer, score_safely
from devicefleet_processor.registry import DeviceRegistry

STAGE = "processor"


@dataclass(frozen=True)
class Output:
    """What to produce for one input record."""

    dead_letter: bool
    key: bytes | None
    value: bytes
    headers: KafkaHeaderList
    message_id: str | None
    device_id: str | None
    reason: str | None = None


def process(
    msg: Message,
    registry: DeviceRegistry,
    max_future: float,
    max_age: float,
    now: float | None = None,
    scorer: HealthScorer | None = None,
) -> Output:
    """Decode ``msg``; raises ``RegistryUnavailable`` when the device registry cannot answer."""
    raw = msg.value() or b""
    try:
        envelope = RawEnvelope.model_validate_json(raw)
    except pydantic.ValidationError as exc:
        return _dead_letter(msg, None, None, "invalid_envelope", _first_error(exc))
    try:
        check_ids(envelope)
        device = registry.get(envelope.device_id)
        if device is None:
            raise DecodeError("unknown_device", f"{envelope.device_id} is not in the registry")
        if envelope.fleet is not None and envelope.fleet != device.fleet:
            # Authenticated as one fleet, publishing for another's device (ingest's bearer
            # token names the fleet; only the registry knows the device's).
            raise DecodeError(
                "fleet_mismatch",
                f"{envelope.device_id} belongs to fleet {device.fleet!r}, not to the sender's "
                f"fleet {envelope.fleet!r}",
            )
        check_timestamp(envelope.timestamp, now or time.time(), max_future, max_age)
        record = decode(envelope, device)
    except DecodeError as exc:
        return _dead_letter(msg, envelope.message_id, envelope.device_id, exc.reason, exc.detail)
    if scorer is not None:
        record.health = score_safely(scorer, envelope, record)
    headers = message_headers(msg)
    if not any(k == MESSAGE_ID_HEADER for k, _ in headers):
        headers.append((MESSAGE_ID_HEADER, record.message_id.encode()))
    return Output(
        dead_letter=False,
        key=record.device_id.encode(),
        value=record.model_dump_json(exclude_none=True).encode(),
        headers=headers,
        message_id=record.message_id,
        device_id=record.device_id,
    )


def _first_error(exc: pydantic.ValidationError) -> str:
    err = exc.errors()[0]
    return f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"


def _dead_letter(
    msg: Message, message_id: str | None, device_id: str | None, reason: str, detail: str
) -> Output:
    return Output(
        dead_letter=True,
        key=msg.key(),
        value=msg.value() or b"",
        headers=dead_letter_headers(msg, STAGE, reason, detail),
        message_id=message_id,
        device_id=device_id,
        reason=reason,
    )
