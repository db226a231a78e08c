"""Wire contracts between services: HTTP ingest body, raw envelope, decoded record.

The message id ``<device_id>:<boot_epoch>:<sequence>`` is chosen by the device and survives
simulator restarts (a new boot epoch starts a new sequence). It is the idempotency key at
ingest and, with the metric and time, the unique key in the database.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from devicefleet_common.features import HealthState

# ':' is reserved as the message-id separator, '/' and '+'/'#' would break MQTT topics.
DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
DeviceId = Annotated[str, StringConstraints(pattern=DEVICE_ID_PATTERN)]
Profile = Literal["truck", "f2", "generic"]

# What the sink writes must fit PostgreSQL: text without NUL (refused by the server), ids and
# metric names short enough for the unique index (rows over ~2.7 kB are refused), times a
# datetime can hold. A record breaking these would fail its whole batch again and again.
MAX_MESSAGE_ID_LENGTH = 256
MAX_METRIC_LENGTH = 128
_NO_NUL = r"^[^\x00]*$"
StoredText = Annotated[str, StringConstraints(pattern=_NO_NUL)]
StoredMessageId = Annotated[
    str, StringConstraints(pattern=_NO_NUL, min_length=1, max_length=MAX_MESSAGE_ID_LENGTH)
]
EARLIEST_TIMESTAMP = -62135596800.0  # 0001-01-01T00:00:00Z
LATEST_TIMESTAMP = 253402300799.0  # 9999-12-31T23:59:59Z

# Header/user-property names that carry the message id and dead-letter details.
MESSAGE_ID_HEADER = "message-id"
DLQ_REASON_HEADER = "dlq-reason"
DLQ_STAGE_HEADER = "dlq-stage"
DLQ_DETAIL_HEADER = "dlq-detail"


def make_message_id(device_id: str, boot_epoch: int, sequence: int) -> str:
    return f"{device_id}:{boot_epoch}:{sequence}"


def content_message_id(device_id: str, topic: str, payload: bytes) -> str:
    """Id for a message from a device that does not send one: the same bytes on the same
    topic are the same message, so a broker redelivery is still recognised."""
    digest = hashlib.sha256(topic.encode() + b"\0" + payload).hexdigest()[:32]
    return f"{device_id}:sha256:{digest}"


_RFC3339_START = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _not_a_number(value: Any) -> Any:
    # Lax mode would read a JSON number, or a string of digits such as "0", as epoch seconds;
    # the API documents RFC 3339 text, and a device sending 0 meant something else than 1970.
    if isinstance(value, int | float):
        raise ValueError("Input should be a valid datetime (an RFC 3339 string, not a number)")
    if isinstance(value, str) and not _RFC3339_START.match(value):
        raise ValueError(
            "Input should be a valid datetime (an RFC 3339 string, e.g. 2026-01-31T12:00:00Z)"
        )
    return value


def _json_integer(value: Any) -> Any:
    # Lax mode would read "7" as 7 and true as 1; the API documents a JSON integer (7.0 is one).
    if isinstance(value, str | bool):
        raise ValueError(
            f"Input should be a valid integer (a JSON number, not a {type(value).__name__})"
        )
    return value


class TelemetryIn(BaseModel):
    """One reading as a device POSTs it to ``/ingest``."""

    model_config = ConfigDict(extra="forbid")

    device_id: DeviceId
    boot_epoch: Annotated[int, BeforeValidator(_json_integer)] = Field(
        ge=0, le=2**53, description="Device boot time, epoch seconds"
    )
    sequence: Annotated[int, BeforeValidator(_json_integer)] = Field(
        ge=0, le=2**53, description="Per-boot sequence number"
    )
    timestamp: Annotated[AwareDatetime, BeforeValidator(_not_a_number)] = Field(
        description="When the device took the reading (RFC 3339)"
    )
    topic: str | None = Field(
        None,
        max_length=256,
        description="Logical topic in the MQTT layout (e.g. trucks/<id>/telemetry); "
        "defaults to http/<device_id>",
    )
    payload: dict[str, Any] = Field(description="The reading itself, decoded downstream")

    @property
    def message_id(self) -> str:
        return make_message_id(self.device_id, self.boot_epoch, self.sequence)


class TelemetryBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: list[TelemetryIn] = Field(min_length=1, max_length=1000)


class RawEnvelope(BaseModel):
    """Value of a ``raw_iot_data`` record (key: device id)."""

    message_id: str
    device_id: str
    original_topic: str
    # JSON payload as sent; non-JSON MQTT payloads arrive as text so the processor can
    # dead-letter them with a reason instead of the bridge dropping them.
    payload: Any
    payload_encoding: Literal["json", "text", "base64"] = "json"
    timestamp: float = Field(
        allow_inf_nan=False, description="Device time, epoch seconds (receive time if absent)"
    )
    received_at: float = Field(allow_inf_nan=False)
    source: Literal["mqtt", "http"]
    # The fleet whose credentials the message came with (ingest's bearer token); the processor
    # dead-letters it if the device belongs to another fleet. None: unauthenticated (auth off).
    fleet: str | None = None


class Measurement(BaseModel):
    metric: Annotated[StoredText, StringConstraints(min_length=1, max_length=MAX_METRIC_LENGTH)]
    value: float | None = Field(None, allow_inf_nan=False)
    value_text: StoredText | None = None
    unit: StoredText | None = None


class HealthPrediction(BaseModel):
    """The processor's verdict on a truck's health at one reading."""

    model_version: StoredText
    state: HealthState
    probabilities: dict[StoredText, float]
    features: dict[StoredText, float]
    features_source: Literal["edge", "processor"]
    # Copied from a test-mode simulator's ``_truth``, for scoring only; the model never sees it.
    true_state: HealthState | None = None


class DecodedRecord(BaseModel):
    """Value of a ``decoded_iot_data`` record (key: device id)."""

    message_id: StoredMessageId
    device_id: DeviceId
    timestamp: float = Field(ge=EARLIEST_TIMESTAMP, le=LATEST_TIMESTAMP)
    profile: Profile
    original_topic: StoredText
    connector_mode: StoredText | None = None
    component_type: StoredText | None = None
    measurements: list[Measurement]
    # The registry's fleet, site and model: text, as the jsonb column stores it (orjson
    # refuses integers beyond 64 bits, PostgreSQL a NUL).
    attributes: dict[StoredText, StoredText] = Field(default_factory=dict)
    health: HealthPrediction | None = None
