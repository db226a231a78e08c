"""Kafka readiness for ``/ready``: a cached metadata request, run in a thread."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class KafkaReadiness:
    def __init__(self, check: Callable[[], bool], cache_seconds: float) -> None:
        self._check = check
        self._cache_seconds = cache_seconds
        self._checked_at = float("-inf")
        self._ready = False
        self._lock = asyncio.Lock()

    async def ready(self) -> bool:
        async with self._lock:  # one check at a time; concurrent probes share its answer
            if time.monotonic() - self._checked_at >= self._cache_seconds:
                # librdkafka's metadata request blocks: keep it off the event loop.
                self._ready = await asyncio.to_thread(self._check)
                self._checked_at = time.monotonic()
            return self._ready
