"""Fault injection (seed 002): drop, jitter, duplicate, malformed.

One decision per generated message, drawn from the simulator's RNG so a fixed seed gives a
reproducible run. A dropped message still consumes its sequence number: downstream sees the
gap exactly as it would from a real device losing a packet.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Literal

MalformKind = Literal["invalid-json", "wrong-type"]

_HEX_REGISTER = re.compile(r"^[0-9A-Fa-f]{4}$")


@dataclass(frozen=True)
class FaultRates:
    drop_rate: float = 0.0
    jitter_rate: float = 0.0
    max_jitter: float = 0.0
    duplicate_rate: float = 0.0
    malformed_rate: float = 0.0


@dataclass(frozen=True)
class FaultPlan:
    drop: bool = False
    jitter: float = 0.0  # seconds to wait before the first send
    duplicate: bool = False  # send a second copy (same message id) after the first is acked
    malformed: MalformKind | None = None


NO_FAULTS = FaultPlan()


class FaultInjector:
    def __init__(self, rates: FaultRates, rng: random.Random) -> None:
        self._rates = rates
        self._rng = rng

    def plan(self) -> FaultPlan:
        r, rng = self._rates, self._rng
        if rng.random() < r.drop_rate:
            return FaultPlan(drop=True)
        jitter = rng.uniform(0.0, r.max_jitter) if rng.random() < r.jitter_rate else 0.0
        duplicate = rng.random() < r.duplicate_rate
        malformed: MalformKind | None = None
        if rng.random() < r.malformed_rate:
            malformed = rng.choice(("invalid-json", "wrong-type"))
        return FaultPlan(jitter=jitter, duplicate=duplicate, malformed=malformed)

    def corrupt(self, payload: dict[str, Any]) -> dict[str, Any]:
        return corrupt_payload(payload, self._rng)


def corrupt_payload(payload: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Same keys, one reading replaced by a value of the wrong type or encoding, so the
    message is valid JSON that the processor must dead-letter (e.g. rs485 ``"ZZZZ"``)."""
    fields = sorted(k for k in payload if k != "timestamp")
    if not fields:
        return {**payload, "timestamp": 12345}
    key = rng.choice(fields)
    value = payload[key]
    bad: Any
    if isinstance(value, bool):
        bad = "maybe"
    elif isinstance(value, int | float):
        bad = "n/a"
    elif isinstance(value, str) and _HEX_REGISTER.match(value):
        bad = "ZZZZ"
    else:
        bad = 12345
    return {**payload, key: bad}
