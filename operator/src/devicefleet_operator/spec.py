"""The DeviceFleet spec as a typed value, with the defaults the CRD declares. Pure."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from devicefleet_common.schemas import Profile

_DURATION = re.compile(r"^(?P<value>[0-9]+(\.[0-9]+)?)(?P<unit>ms|s|m)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0}


class InvalidSpec(ValueError):
    """A spec the CRD schema let through but the operator cannot use; names the field."""


def parse_duration(value: str, path: str) -> float:
    match = _DURATION.match(value)
    if not match:
        raise InvalidSpec(f"{path} must look like 500ms, 1s or 2m, got {value!r}")
    return float(match["value"]) * _UNIT_SECONDS[match["unit"]]


@dataclass(frozen=True)
class FleetSpec:
    profile: Profile
    devices: int = 10
    devices_per_pod: int = 100
    publish_interval: float = 1.0
    transport: str = "mqtt"
    mqtt_host: str | None = None
    mqtt_port: int | None = None
    ingest_url: str | None = None
    drop_rate: float = 0.0
    jitter_rate: float = 0.0
    max_jitter: float = 2.0
    duplicate_rate: float = 0.0
    malformed_rate: float = 0.0
    retry_max_attempts: int = 5
    retry_base: float = 1.0
    retry_max: float = 30.0
    breaker_fail_max: int = 5
    breaker_reset_timeout: float = 60.0
    buffer_size: int = 10_000
    paused: bool = False
    edge: bool = False
    ground_truth: bool = False
    image: str | None = None
    resources: dict[str, Any] = field(default_factory=dict)

    @property
    def pods(self) -> int:
        """Simulator pods this fleet needs: none while paused."""
        if self.paused or self.devices == 0:
            return 0
        return math.ceil(self.devices / self.devices_per_pod)

    def devices_of_pod(self, index: int) -> int:
        return max(0, min(self.devices_per_pod, self.devices - index * self.devices_per_pod))


def parse_spec(spec: Mapping[str, Any]) -> FleetSpec:
    profile = spec.get("profile")
    if profile not in ("truck", "f2", "generic"):
        raise InvalidSpec(f"spec.profile must be truck, f2 or generic, got {profile!r}")
    endpoints = spec.get("endpoints") or {}
    faults = spec.get("faults") or {}
    resilience = spec.get("resilience") or {}
    retry = resilience.get("retry") or {}
    breaker = resilience.get("circuitBreaker") or {}
    edge = (spec.get("edge") or {}).get("enabled")
    # The CRD cannot default by profile: trucks have edge gateways unless told otherwise.
    edge = profile == "truck" if edge is None else bool(edge)
    ground_truth = bool(spec.get("groundTruth", False))
    for field_name, on in (("spec.edge.enabled", edge), ("spec.groundTruth", ground_truth)):
        if on and profile != "truck":
            raise InvalidSpec(f"{field_name} needs profile truck, got {profile}")
    per_pod = int(spec.get("devicesPerPod", 100))
    if per_pod < 1:
        raise InvalidSpec(f"spec.devicesPerPod must be >= 1, got {per_pod}")
    return FleetSpec(
        profile=profile,
        devices=int(spec.get("devices", 10)),
        devices_per_pod=per_pod,
        publish_interval=parse_duration(spec.get("publishInterval", "1s"), "spec.publishInterval"),
        transport=spec.get("transport", "mqtt"),
        mqtt_host=endpoints.get("mqttHost"),
        mqtt_port=endpoints.get("mqttPort"),
        ingest_url=endpoints.get("ingestUrl"),
        drop_rate=float(faults.get("dropRate", 0.0)),
        jitter_rate=float(faults.get("jitterRate", 0.0)),
        max_jitter=parse_duration(faults.get("maxJitter", "2s"), "spec.faults.maxJitter"),
        duplicate_rate=float(faults.get("duplicateRate", 0.0)),
        malformed_rate=float(faults.get("malformedRate", 0.0)),
        retry_max_attempts=int(retry.get("maxAttempts", 5)),
        retry_base=parse_duration(retry.get("base", "1s"), "spec.resilience.retry.base"),
        retry_max=parse_duration(retry.get("max", "30s"), "spec.resilience.retry.max"),
        breaker_fail_max=int(breaker.get("failMax", 5)),
        breaker_reset_timeout=parse_duration(
            breaker.get("resetTimeout", "60s"), "spec.resilience.circuitBreaker.resetTimeout"
        ),
        buffer_size=int(resilience.get("bufferSize", 10_000)),
        paused=bool(spec.get("paused", False)),
        edge=edge,
        ground_truth=ground_truth,
        image=spec.get("image"),
        resources=dict(spec.get("resources") or {}),
    )
