"""One generated reading on its way out, and its wire encodings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from opentelemetry.trace import Span

from devicefleet_common.schemas import TelemetryIn, make_message_id
from devicefleet_simulator.faults import MalformKind

INVALID_TIMESTAMP = "not-a-timestamp"


@dataclass
class OutgoingMessage:
    device_id: str
    boot_epoch: int
    sequence: int
    topic: str
    payload: dict[str, Any]
    malformed: MalformKind | None = None
    duplicate: bool = False  # fault: send a second copy once this one is acknowledged
    order: int = 0  # position in the process-wide generation order; the buffer keeps it
    # The message's trace: started when it is generated, ended once it is settled, so
    # retries and a stay in the buffer all belong to the same trace.
    span: Span | None = field(default=None, compare=False, repr=False)

    @property
    def message_id(self) -> str:
        return make_message_id(self.device_id, self.boot_epoch, self.sequence)

    @property
    def timestamp(self) -> str:
        return str(self.payload.get("timestamp", ""))

    def mqtt_body(self) -> bytes:
        body = orjson.dumps(self.payload)
        if self.malformed == "invalid-json":
            return body[: len(body) // 2]  # truncated mid-object: not JSON any more
        return body

    def http_body(self) -> bytes:
        """A ``TelemetryIn`` body; a malformed message gets one ingest must reject with 400."""
        if self.malformed == "invalid-json":
            return self.mqtt_body()
        if self.malformed == "wrong-type":
            body = self.envelope()
            body["timestamp"] = INVALID_TIMESTAMP
            return orjson.dumps(body)
        # Validate our own output: a bug here would otherwise look like an ingest problem.
        return TelemetryIn.model_validate(self.envelope()).model_dump_json().encode()

    def envelope(self) -> dict[str, Any]:
        """The ``TelemetryIn`` fields of a well-formed message."""
        return {
            "device_id": self.device_id,
            "boot_epoch": self.boot_epoch,
            "sequence": self.sequence,
            "timestamp": self.timestamp,
            "topic": self.topic,
            "payload": self.payload,
        }
