"""Device models per profile: each produces one (topic, payload) reading per tick."""

from __future__ import annotations

import random

from devicefleet_common.schemas import Profile
from devicefleet_simulator.profiles.base import DeviceModel, Reading, rfc3339
from devicefleet_simulator.profiles.f2 import F2Controller
from devicefleet_simulator.profiles.generic import GenericSensor
from devicefleet_simulator.profiles.truck import TruckModel

__all__ = ["DeviceModel", "F2Controller", "GenericSensor", "Reading", "TruckModel", "make_model"]
__all__ += ["rfc3339"]


def make_model(profile: Profile, device_id: str, rng: random.Random) -> DeviceModel:
    if profile == "truck":
        return TruckModel(device_id, rng)
    if profile == "f2":
        return F2Controller(device_id, rng)
    return GenericSensor(device_id, rng)
