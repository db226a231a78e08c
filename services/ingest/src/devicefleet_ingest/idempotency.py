"""Fast-path duplicate detection: message ids acknowledged by Kafka recently, plus ids in flight.

This is per process and forgets after the TTL; the database unique key on the message id is
what makes duplicates impossible across restarts and replicas.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum

from cachetools import TTLCache


class Claim(Enum):
    CLAIMED = "claimed"  # new: the caller now owns delivering it
    SEEN = "seen"  # acknowledged by Kafka within the TTL
    IN_FLIGHT = "in_flight"  # another request is delivering it right now


class IdempotencyCache:
    def __init__(
        self, ttl_seconds: float, maxsize: int, timer: Callable[[], float] = time.monotonic
    ) -> None:
        self._seen: TTLCache[str, bool] = TTLCache(maxsize=maxsize, ttl=ttl_seconds, timer=timer)
        self._in_flight: set[str] = set()

    def claim(self, message_id: str) -> Claim:
        if message_id in self._seen:
            return Claim.SEEN
        if message_id in self._in_flight:
            return Claim.IN_FLIGHT
        self._in_flight.add(message_id)
        return Claim.CLAIMED

    def mark_seen(self, message_id: str) -> None:
        """Only after Kafka acknowledged the record."""
        self._in_flight.discard(message_id)
        self._seen[message_id] = True

    def release(self, message_id: str) -> None:
        """Delivery failed or timed out: let the device's retry through."""
        self._in_flight.discard(message_id)

    def __len__(self) -> int:
        return len(self._seen)
