"""Mining haul truck (seed 000): a hidden health state drives the sensor distributions.

normal -> degrading -> critical -> maintenance -> normal, with small per-tick probabilities
(degrading may also recover). Degradation sets in gradually: over its first
``DEGRADING_ONSET_TICKS`` readings the sensors drift from normal to fully degraded values,
so an early degrading truck looks almost normal and detecting it takes time. The state is
deliberately NOT in the payload: the health model is scored against ``TruckModel.state``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from devicefleet_common.topics import truck_topic
from devicefleet_simulator.profiles.base import Reading, clamp, rfc3339

TruckState = Literal["normal", "degrading", "critical", "maintenance"]

# state -> [(next state, probability per tick)]
TRANSITIONS: dict[TruckState, list[tuple[TruckState, float]]] = {
    "normal": [("degrading", 0.01)],
    "degrading": [("critical", 0.02), ("normal", 0.005)],
    "critical": [("maintenance", 0.05)],
    "maintenance": [("normal", 0.1)],
}


@dataclass(frozen=True)
class Gauss:
    mean: float
    sd: float


@dataclass(frozen=True)
class StateProfile:
    engine_temp_c: Gauss
    oil_pressure_kpa: Gauss
    vibration_mm_s: Gauss
    rpm: Gauss
    speed_kmh: Gauss
    fuel_burn_pct: float  # per tick


PROFILES: dict[TruckState, StateProfile] = {
    "normal": StateProfile(
        Gauss(90, 3), Gauss(350, 15), Gauss(3.0, 0.7), Gauss(1600, 150), Gauss(35, 8), 0.02
    ),
    "degrading": StateProfile(
        Gauss(100, 4), Gauss(300, 20), Gauss(6.0, 1.2), Gauss(1650, 200), Gauss(30, 8), 0.025
    ),
    "critical": StateProfile(
        Gauss(112, 5), Gauss(220, 25), Gauss(11.0, 2.0), Gauss(1750, 250), Gauss(20, 8), 0.03
    ),
    # Parked in the workshop, engine idling.
    "maintenance": StateProfile(
        Gauss(45, 5), Gauss(120, 10), Gauss(0.5, 0.2), Gauss(700, 50), Gauss(0, 0), 0.002
    ),
}

RATED_PAYLOAD_T = 220.0
DEGRADING_ONSET_TICKS = 60


def _blend(a: Gauss, b: Gauss, share: float) -> Gauss:
    return Gauss(a.mean + (b.mean - a.mean) * share, a.sd + (b.sd - a.sd) * share)


def degrading_profile(ticks_in_state: int) -> StateProfile:
    """The sensors ``ticks_in_state`` readings into a degradation (1 = its first)."""
    share = min(1.0, ticks_in_state / DEGRADING_ONSET_TICKS)
    normal, degraded = PROFILES["normal"], PROFILES["degrading"]
    return StateProfile(
        _blend(normal.engine_temp_c, degraded.engine_temp_c, share),
        _blend(normal.oil_pressure_kpa, degraded.oil_pressure_kpa, share),
        _blend(normal.vibration_mm_s, degraded.vibration_mm_s, share),
        _blend(normal.rpm, degraded.rpm, share),
        _blend(normal.speed_kmh, degraded.speed_kmh, share),
        normal.fuel_burn_pct + (degraded.fuel_burn_pct - normal.fuel_burn_pct) * share,
    )


class TruckModel:
    def __init__(self, device_id: str, rng: random.Random) -> None:
        self.device_id = device_id
        self._rng = rng
        self._topic = truck_topic(device_id)
        self._state: TruckState = "normal"
        self._ticks_in_state = 0
        self._fuel = rng.uniform(40.0, 100.0)
        self._loaded = rng.random() < 0.5

    @property
    def state(self) -> TruckState:
        """Ground truth for scoring predictions; never published."""
        return self._state

    def _advance(self) -> None:
        self._ticks_in_state += 1
        draw = self._rng.random()
        for target, probability in TRANSITIONS[self._state]:
            if draw < probability:
                self._state = target
                self._ticks_in_state = 1
                return
            draw -= probability

    def tick(self, now: datetime) -> Reading:
        self._advance()
        rng = self._rng
        p = (
            degrading_profile(self._ticks_in_state)
            if self._state == "degrading"
            else PROFILES[self._state]
        )

        def sample(g: Gauss, low: float = 0.0) -> float:
            return max(low, rng.gauss(g.mean, g.sd))

        self._fuel -= max(0.0, rng.gauss(p.fuel_burn_pct, p.fuel_burn_pct / 4))
        if self._fuel < 10.0 or self._state == "maintenance":
            self._fuel = 100.0  # refuelled
        if self._state != "maintenance" and rng.random() < 0.02:
            self._loaded = not self._loaded  # haul cycle: load at the shovel, dump at the crusher
        payload_t = rng.gauss(RATED_PAYLOAD_T, 10) if self._loaded else rng.gauss(0, 0.3)
        return Reading(
            self._topic,
            {
                "timestamp": rfc3339(now),
                "engine_temp_c": round(sample(p.engine_temp_c, -40.0), 1),
                "oil_pressure_kpa": round(sample(p.oil_pressure_kpa), 1),
                "vibration_mm_s": round(sample(p.vibration_mm_s), 2),
                "rpm": round(sample(p.rpm)),
                "fuel_level_pct": round(clamp(self._fuel, 0.0, 100.0), 2),
                "speed_kmh": round(sample(p.speed_kmh), 1),
                "payload_t": round(max(0.0, payload_t), 1),
            },
        )
