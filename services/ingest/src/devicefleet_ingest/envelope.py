"""The ``raw_iot_data`` record built from an HTTP reading."""

from __future__ import annotations

from devicefleet_common.schemas import RawEnvelope, TelemetryIn


def http_envelope(body: TelemetryIn, received_at: float, fleet: str | None = None) -> RawEnvelope:
    return RawEnvelope(
        message_id=body.message_id,
        device_id=body.device_id,
        original_topic=body.topic or f"http/{body.device_id}",
        payload=body.payload,
        payload_encoding="json",
        timestamp=body.timestamp.timestamp(),
        received_at=received_at,
        source="http",
        fleet=fleet,
    )
