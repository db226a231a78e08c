"""Stable device ids for simulated fleets.

A device's id depends only on (profile, fleet, index), so a restarted or rescaled simulator
publishes as the same devices and the registry never needs rewriting. Pod ``k`` of a fleet
with ``devicesPerPod = n`` simulates indexes ``k*n .. k*n+n-1``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from devicefleet_common.schemas import Profile

# Default RS-485 calibration of simulated F2 controllers: raw register value * scale + offset.
F2_RS485_DEFAULTS: dict[str, dict[str, Any]] = {
    "temperature": {"scale": 0.1, "offset": 0.0, "unit": "C", "signed": True},
    "humidity": {"scale": 0.1, "offset": 0.0, "unit": "%RH", "signed": False},
    "pressure": {"scale": 0.1, "offset": 0.0, "unit": "hPa", "signed": False},
}


def device_id(profile: Profile, fleet: str, index: int) -> str:
    if profile == "f2":
        mac = hashlib.sha256(f"{fleet}/{index}".encode()).hexdigest()[:12]
        return f"f2-{mac}"
    prefix = "truck" if profile == "truck" else "sensor"
    return f"{prefix}-{fleet}-{index:05d}"


def fleet_device_ids(profile: Profile, fleet: str, start: int, count: int) -> list[str]:
    return [device_id(profile, fleet, i) for i in range(start, start + count)]


def default_parameters(profile: Profile) -> dict[str, Any]:
    """Registry parameters a simulated device of this profile is registered with."""
    if profile == "f2":
        return {"rs485": F2_RS485_DEFAULTS, "model": "F2 Smart Controller"}
    if profile == "truck":
        return {"model": "CAT 793F", "units": {"engine_temp_c": "C", "oil_pressure_kpa": "kPa"}}
    return {"model": "generic-sensor"}
