"""A reading sent with one fleet's ingest token for another fleet's device is dead-lettered."""

from __future__ import annotations

from confluent_kafka import Message

from devicefleet_common.kafka import header_value
from devicefleet_common.schemas import DLQ_REASON_HEADER, RawEnvelope
from devicefleet_processor.decoders import DeviceParams
from devicefleet_processor.pipeline import Output, process
from devicefleet_processor.registry import DeviceRegistry

NOW = 1_800_000_000.0
DEVICE = DeviceParams("sensor-theirs-00000", "generic", "theirs")


class OneDevice(DeviceRegistry):
    def __init__(self) -> None:
        super().__init__("", refresh_seconds=1e9, miss_ttl=1e9)

    def get(self, device_id: str) -> DeviceParams | None:
        return DEVICE if device_id == DEVICE.device_id else None


def run(fleet: str | None) -> Output:
    envelope = RawEnvelope(
        message_id=f"{DEVICE.device_id}:1:1",
        device_id=DEVICE.device_id,
        original_topic=f"http/{DEVICE.device_id}",
        payload={"temperature": 21.5},
        timestamp=NOW,
        received_at=NOW,
        source="http",
        fleet=fleet,
    )
    value = envelope.model_dump_json().encode()
    msg = Message(topic="raw", partition=0, offset=1, key=b"k", value=value, headers=[])
    return process(msg, OneDevice(), 3600.0, 86400.0, now=NOW)


def test_another_fleets_token_is_dead_lettered() -> None:
    out = run("mine")
    assert out.dead_letter
    assert out.reason == "fleet_mismatch"
    assert header_value(out.headers, DLQ_REASON_HEADER) == "fleet_mismatch"


def test_own_fleet_and_unauthenticated_are_decoded() -> None:
    assert not run("theirs").dead_letter
    assert not run(None).dead_letter  # auth off: nothing to compare
