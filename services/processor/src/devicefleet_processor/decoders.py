"""Decoding raw device payloads into measurements. Pure functions, no I/O.

Every way a payload can be wrong raises ``DecodeError`` with a short machine-readable
reason (it becomes the ``dlq-reason`` header) and a human-readable detail.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import pydantic

from devicefleet_common.devices import F2_RS485_DEFAULTS
from devicefleet_common.schemas import (
    DEVICE_ID_PATTERN,
    MAX_MESSAGE_ID_LENGTH,
    MAX_METRIC_LENGTH,
    DecodedRecord,
    Measurement,
    Profile,
    RawEnvelope,
)
from devicefleet_common.topics import TopicInfo, parse_topic


class DecodeError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class DeviceParams:
    """One row of the device registry."""

    device_id: str
    profile: Profile
    fleet: str | None = None
    site: str | None = None
    model: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


F2_BOOLEAN_COMPONENTS = {
    "door-sensors",
    "electric-strikes",
    "exit-buttons",
    "motion-sensors",
    "sirens",
}
F2_STRING_COMPONENTS = {"qr-readers", "nfc-readers"}
F2_RS485_COMPONENT = "rs485-sensors"

DEFAULT_UNITS: dict[str, str] = {
    # trucks (seed 000)
    "engine_temp_c": "C",
    "oil_pressure_kpa": "kPa",
    "vibration_mm_s": "mm/s",
    "rpm": "rpm",
    "fuel_level_pct": "%",
    "speed_kmh": "km/h",
    "payload_t": "t",
    # generic sensors (seed 003)
    "temperature": "C",
    "humidity": "%RH",
    "battery_v": "V",
}
MAX_TEXT_LENGTH = 4096
# Readings in one message. Devices send tens; a payload of many thousands (a firmware bug, or
# a flood inside one ~1 MB record) would become as many rows in one sink batch, so it is
# dead-lettered whole instead of stored in part.
MAX_READINGS = 1000
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# int(x, 16) also takes signs, "0x", "_", spaces and non-ASCII digits: a register is not that.
_HEX_REGISTER = re.compile(r"[0-9A-Fa-f]{4}")
_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)


def _reading_items(payload: dict[str, Any]) -> list[tuple[str, Any]]:
    # "timestamp" is envelope data; "_"-prefixed keys are reserved for simulator metadata.
    items = [(k, v) for k, v in payload.items() if k != "timestamp" and not k.startswith("_")]
    if len(items) > MAX_READINGS:
        raise DecodeError(
            "too_many_measurements",
            f"payload has {len(items)} readings, at most {MAX_READINGS} per message",
        )
    for key, _ in items:
        if not key or len(key) > MAX_METRIC_LENGTH or _CONTROL_CHARACTERS.search(key):
            raise DecodeError(
                "invalid_metric",
                f"metric name {key[:40]!r} must be 1-{MAX_METRIC_LENGTH} characters "
                "without control characters",
            )
    return items


def decode_f2(component: str, payload: dict[str, Any], device: DeviceParams) -> list[Measurement]:
    items = _reading_items(payload)
    if not items:
        raise DecodeError("no_measurements", f"{component} payload has no readings")
    if component in F2_BOOLEAN_COMPONENTS:
        out = []
        for key, value in items:
            if not isinstance(value, bool):
                raise DecodeError(
                    "invalid_value",
                    f"{component}.{key} must be a boolean, got {type(value).__name__}",
                )
            out.append(Measurement(metric=key, value=1.0 if value else 0.0, unit="state"))
        return out
    if component in F2_STRING_COMPONENTS:
        out = []
        for key, value in items:
            # NUL is the one character PostgreSQL text cannot hold (control characters like
            # GS1's group separator are legitimate in a QR code).
            if (
                not isinstance(value, str)
                or not value
                or len(value) > MAX_TEXT_LENGTH
                or "\x00" in value
            ):
                raise DecodeError(
                    "invalid_value",
                    f"{component}.{key} must be a non-empty string "
                    f"of at most {MAX_TEXT_LENGTH} chars without NUL",
                )
            out.append(Measurement(metric=key, value_text=value, unit="raw"))
        return out
    if component == F2_RS485_COMPONENT:
        calibration = {**F2_RS485_DEFAULTS, **device.params.get("rs485", {})}
        return [decode_rs485(key, value, calibration.get(key)) for key, value in items]
    raise DecodeError("unknown_component", f"F2 component {component!r} is not supported")


def decode_rs485(key: str, value: Any, calibration: dict[str, Any] | None) -> Measurement:
    """A 16-bit register as 4 hex digits, scaled by the device's calibration."""
    if not isinstance(value, str) or not _HEX_REGISTER.fullmatch(value):
        shown = repr(value[:8]) if isinstance(value, str) else type(value).__name__
        raise DecodeError("invalid_value", f"rs485-sensors.{key}={shown} is not 4 hex digits")
    raw = int(value, 16)
    if calibration is None:
        return Measurement(metric=key, value=float(raw), unit="raw")
    if calibration.get("signed") and raw >= 0x8000:
        raw -= 0x10000
    scaled = raw * float(calibration.get("scale", 1.0)) + float(calibration.get("offset", 0.0))
    return Measurement(metric=key, value=round(scaled, 6), unit=calibration.get("unit"))


def decode_numeric(payload: dict[str, Any], device: DeviceParams) -> list[Measurement]:
    """Trucks and generic sensors: every reading is a finite number."""
    units = {**DEFAULT_UNITS, **device.params.get("units", {})}
    out = []
    for key, value in _reading_items(payload):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DecodeError(
                "invalid_value", f"{key} must be a number, got {type(value).__name__}"
            )
        try:
            number = float(value)  # a JSON integer can have any number of digits
        except OverflowError:
            raise DecodeError("invalid_value", f"{key} is out of range") from None
        if not math.isfinite(number):
            raise DecodeError("invalid_value", f"{key} must be finite")
        out.append(Measurement(metric=key, value=number, unit=units.get(key)))
    if not out:
        raise DecodeError("no_measurements", "payload has no readings")
    return out


def decode(envelope: RawEnvelope, device: DeviceParams) -> DecodedRecord:
    """Decode one raw envelope of a registered device."""
    topic = parse_topic(envelope.original_topic)
    if topic is None:
        raise DecodeError("unknown_topic", f"topic {envelope.original_topic!r} matches no layout")
    if topic.device_id != envelope.device_id:
        raise DecodeError(
            "device_mismatch", f"topic names {topic.device_id}, envelope {envelope.device_id}"
        )
    if topic.profile is not None and topic.profile != device.profile:
        raise DecodeError(
            "profile_mismatch",
            f"topic is {topic.profile}, device "
            f"{device.device_id} is registered as "
            f"{device.profile}",
        )
    if envelope.payload_encoding != "json" or not isinstance(envelope.payload, dict):
        raise DecodeError(
            "payload_not_json_object",
            f"payload is {envelope.payload_encoding} ({type(envelope.payload).__name__})",
        )
    try:
        return _decoded_record(envelope, envelope.payload, device, topic)
    except pydantic.ValidationError as exc:
        # The record contract the sink relies on (see DecodedRecord): a dead letter here
        # rather than a record the sink could only dead-letter or, worse, fail to write.
        err = exc.errors()[0]
        detail = f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
        raise DecodeError("invalid_record", detail) from None


def _decoded_record(
    envelope: RawEnvelope, payload: dict[str, Any], device: DeviceParams, topic: TopicInfo
) -> DecodedRecord:
    profile = device.profile
    if profile == "f2":
        if topic.component_type is None:
            raise DecodeError(
                "missing_component", "F2 messages need a cmnd/<id>/<mode>/J1/<component> topic"
            )
        measurements = decode_f2(topic.component_type, payload, device)
    else:
        measurements = decode_numeric(payload, device)
    return DecodedRecord(
        message_id=envelope.message_id,
        device_id=envelope.device_id,
        timestamp=envelope.timestamp,
        profile=profile,
        original_topic=envelope.original_topic,
        connector_mode=topic.connector_mode,
        component_type=topic.component_type,
        measurements=measurements,
        attributes={
            k: v
            for k, v in (("fleet", device.fleet), ("site", device.site), ("model", device.model))
            if v is not None
        },
    )


def check_ids(envelope: RawEnvelope) -> None:
    """Ids fit for a registry lookup and the database (the bridge forwards whatever a topic
    and a message-id property hold; a NUL in a lookup would look like a database outage)."""
    if not _DEVICE_ID.fullmatch(envelope.device_id):
        raise DecodeError(
            "invalid_device_id", f"device id {envelope.device_id[:40]!r} is not a valid id"
        )
    message_id = envelope.message_id
    if not message_id or len(message_id) > MAX_MESSAGE_ID_LENGTH or "\x00" in message_id:
        raise DecodeError(
            "invalid_message_id",
            f"message id {message_id[:40]!r} must be 1-{MAX_MESSAGE_ID_LENGTH} characters "
            "without NUL",
        )


def check_timestamp(timestamp: float, now: float, max_future: float, max_age: float) -> None:
    if timestamp > now + max_future:
        raise DecodeError("timestamp_in_future", f"{timestamp - now:.0f}s ahead of the processor")
    if timestamp < now - max_age:
        raise DecodeError("timestamp_too_old", f"{now - timestamp:.0f}s old")
