"""What every device model produces per tick: a topic and a JSON payload."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class Reading:
    topic: str
    payload: dict[str, Any]


class DeviceModel(Protocol):
    device_id: str

    def tick(self, now: datetime) -> Reading: ...


def rfc3339(moment: datetime) -> str:
    """UTC with a ``Z`` suffix and millisecond precision, e.g. ``2025-01-02T03:04:05.678Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))
