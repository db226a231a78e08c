"""Generic sensor (seed 003): ``sensors/<id>`` with temperature, humidity and battery."""

from __future__ import annotations

import random
from datetime import datetime

from devicefleet_common.topics import sensor_topic
from devicefleet_simulator.profiles.base import Reading, clamp, rfc3339

BATTERY_FULL_V = 4.2
BATTERY_EMPTY_V = 3.3


class GenericSensor:
    def __init__(self, device_id: str, rng: random.Random) -> None:
        self.device_id = device_id
        self._rng = rng
        self._topic = sensor_topic(device_id)
        # Each device gets its own climate so the fleet is not one flat line.
        self._temperature = rng.uniform(18.0, 26.0)
        self._humidity = rng.uniform(35.0, 60.0)
        self._battery = rng.uniform(3.8, BATTERY_FULL_V)

    def tick(self, now: datetime) -> Reading:
        rng = self._rng
        self._temperature = clamp(self._temperature + rng.gauss(0.0, 0.2), -20.0, 50.0)
        self._humidity = clamp(self._humidity + rng.gauss(0.0, 0.5), 5.0, 95.0)
        self._battery -= rng.uniform(0.0, 0.001)
        if self._battery < BATTERY_EMPTY_V:
            self._battery = BATTERY_FULL_V  # someone swapped the battery
        return Reading(
            self._topic,
            {
                "timestamp": rfc3339(now),
                "temperature": round(self._temperature, 2),
                "humidity": round(self._humidity, 2),
                "battery_v": round(self._battery, 3),
            },
        )
