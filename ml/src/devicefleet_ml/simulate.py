"""A fleet of simulated trucks on a simulated clock, seen exactly as the pipeline sees it:
each reading's feature vector (shared definitions, a full window only) and its true state."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from devicefleet_common.devices import device_id
from devicefleet_common.features import FeatureWindow, HealthState, device_time, sample_of
from devicefleet_simulator.profiles.truck import TruckModel

START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Labelled:
    device_id: str
    time: float  # epoch seconds, device time
    features: dict[str, float] | None  # None until the truck's window is full
    true_state: HealthState


def simulate_fleet(
    seed: int, trucks: int, minutes: float, interval: float = 1.0, fleet: str = "sim"
) -> Iterator[Labelled]:
    """Per truck, in time order: one reading every ``interval`` seconds of simulated time.

    Each truck draws from its own seeded stream, as the simulator does, so a run is
    reproducible from ``seed`` alone.
    """
    ticks = int(minutes * 60 / interval)
    for index in range(trucks):
        dev = device_id("truck", fleet, index)
        model = TruckModel(dev, random.Random(f"{seed}/{dev}"))
        window = FeatureWindow()
        for tick in range(ticks):
            reading = model.tick(START + timedelta(seconds=tick * interval))
            payload = reading.payload
            at = device_time(payload["timestamp"])
            sample = sample_of(at, payload)
            assert sample is not None, "the truck model always sends every health metric"
            features = window.add(f"{dev}:{tick}", sample)
            # The state the reading was drawn from (tick() advances before sampling).
            yield Labelled(dev, at, features, model.state)
