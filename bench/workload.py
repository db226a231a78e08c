"""The workload every benchmark feeds its subject and baseline: readings of a mixed fleet
(trucks, F2 controllers, generic sensors) made by the simulator's own device models, in each
stage's input format."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import orjson

from devicefleet_bootstrap.main import register_devices
from devicefleet_common.devices import default_parameters, fleet_device_ids
from devicefleet_common.schemas import Profile, TelemetryIn
from devicefleet_ingest.envelope import http_envelope
from devicefleet_processor.decoders import DeviceParams, decode
from devicefleet_simulator.message import OutgoingMessage
from devicefleet_simulator.profiles import make_model

PROFILES: tuple[Profile, ...] = ("truck", "f2", "generic")
BOOT_EPOCH = 1_700_000_000


@dataclass(frozen=True)
class Fleet:
    """``devices_per_profile`` devices of each profile, registered like a simulated fleet."""

    name: str
    devices_per_profile: int

    def device_ids(self, profile: Profile) -> list[str]:
        return _device_ids(profile, self.name, self.devices_per_profile)

    def all_device_ids(self) -> list[str]:
        return [d for p in PROFILES for d in self.device_ids(p)]

    def profile_of(self, device_id: str) -> Profile:
        return _profiles(self.name, self.devices_per_profile)[device_id]

    def register(self, database_url: str) -> None:
        for profile in PROFILES:
            register_devices(
                database_url, profile, self.name, self.devices_per_profile, site="bench"
            )


def readings(fleet: Fleet, count: int, seed: int = 7) -> Iterator[OutgoingMessage]:
    """``count`` readings, round robin over the fleet's devices, one second apart per device,
    ending about now (so no stage refuses them as too old or from the future)."""
    rng = random.Random(seed)
    models = [
        (make_model(profile, device, rng), device)
        for profile in PROFILES
        for device in fleet.device_ids(profile)
    ]
    rounds = -(-count // len(models))
    start = datetime.now(UTC) - timedelta(seconds=rounds + 5)
    produced = 0
    for tick in range(rounds):
        now = start + timedelta(seconds=tick)
        for model, device in models:
            if produced == count:
                return
            reading = model.tick(now)
            yield OutgoingMessage(device, BOOT_EPOCH, tick, reading.topic, reading.payload)
            produced += 1


def http_body(message: OutgoingMessage) -> bytes:
    return orjson.dumps(message.envelope())


def raw_record(message: OutgoingMessage) -> tuple[bytes, bytes]:
    """(key, value) of the ``raw_iot_data`` record ingest would produce for the reading."""
    envelope = http_envelope(TelemetryIn.model_validate(message.envelope()), time.time())
    return message.device_id.encode(), envelope.model_dump_json().encode()


def decoded_record(message: OutgoingMessage, fleet: Fleet) -> tuple[bytes, bytes]:
    """(key, value) of the ``decoded_iot_data`` record the processor would produce."""
    envelope = http_envelope(TelemetryIn.model_validate(message.envelope()), time.time())
    profile = fleet.profile_of(message.device_id)
    params: dict[str, Any] = default_parameters(profile)
    device = DeviceParams(
        message.device_id, profile, fleet.name, "bench", params.get("model"), params
    )
    record = decode(envelope, device)
    return message.device_id.encode(), record.model_dump_json(exclude_none=True).encode()


@cache
def _device_ids(profile: Profile, fleet: str, count: int) -> list[str]:
    return fleet_device_ids(profile, fleet, 0, count)


@cache
def _profiles(fleet: str, count: int) -> dict[str, Profile]:
    return {d: p for p in PROFILES for d in _device_ids(p, fleet, count)}
