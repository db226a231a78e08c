"""Wire contracts between services: HTTP ingest body, raw envelope, decoded record.

The message id ``<device_id>:<boot_epoch>:<sequence>`` is chosen by the device and survives
simulator restarts (a new boot epoch starts a new sequence). It is the idempotency key at
ingest and, with the metric and time, the unique key in the database.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from devicefleet_common.features import HealthState

# ':' is reserved as the message-id separator, '/' and '+'/'#' would break MQTT topics.
DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
DeviceId = Annotated[str, StringConstraints(pattern=DEVICE_ID_PATTERN)]
Profile = Literal["truck", "f2", "generic"]

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


class TelemetryIn(BaseModel):
    """One reading as a device POSTs it to ``/ingest``."""

    model_config = ConfigDict(extra="forbid")

    device_id: DeviceId
    boot_epoch: int = Field(ge=0, le=2**53, description="Device boot time, epoch seconds")
    sequence: int = Field(ge=0, le=2**53, description="Per-boot sequence number")
    timestamp: AwareDatetime = Field(description="When the device took the reading (RFC 3339)")
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
    timestamp: float = Field(description="Device time, epoch seconds (receive time if absent)")
    received_at: float
    source: Literal["mqtt", "http"]
    # The fleet whose credentials the message came with (ingest's bearer token); the processor
    # dead-letters it if the device belongs to another fleet. None: unauthenticated (auth off).
    fleet: str | None = None


class Measurement(BaseModel):
    metric: str
    value: float | None = None
    value_text: str | None = None
    unit: str | None = None


class HealthPrediction(BaseModel):
    """The processor's verdict on a truck's health at one reading."""

    model_version: str
    state: HealthState
    probabilities: dict[str, float]
    features: dict[str, float]
    features_source: Literal["edge", "processor"]
    # Copied from a test-mode simulator's ``_truth``, for scoring only; the model never sees it.
    true_state: HealthState | None = None


class DecodedRecord(BaseModel):
    """Value of a ``decoded_iot_data`` record (key: device id)."""

    message_id: str
    device_id: str
    timestamp: float
    profile: Profile
    original_topic: str
    connector_mode: str | None = None
    component_type: str | None = None
    measurements: list[Measurement]
    attributes: dict[str, Any] = Field(default_factory=dict)
    health: HealthPrediction | None = None
