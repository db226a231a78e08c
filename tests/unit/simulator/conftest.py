"""Fakes for the simulator's unit tests (real transports are covered by integration tests)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import pytest

from devicefleet_common.resilience import TransientError
from devicefleet_simulator.delivery import Delivery, ResiliencePolicy
from devicefleet_simulator.message import OutgoingMessage
from devicefleet_simulator.settings import Settings
from devicefleet_simulator.stats import MessageStats
from devicefleet_simulator.transport import Ack


class FakeTransport:
    """Accepts everything while ``up``; ``script`` overrides the next results in order."""

    name = "fake"

    def __init__(self) -> None:
        self.up = True
        self.script: deque[Ack | Exception] = deque()
        self.attempts: list[str] = []
        self.delivered: list[str] = []
        self.started = self.closed = False

    @property
    def ready(self) -> bool:
        return self.up

    async def start(self) -> None:
        self.started = True

    async def send(self, message: OutgoingMessage) -> Ack:
        await asyncio.sleep(0)
        self.attempts.append(message.message_id)
        if self.script:
            result = self.script.popleft()
            if isinstance(result, Exception):
                raise result
            self.delivered.append(message.message_id)
            return result
        if not self.up:
            raise TransientError("connection refused")
        self.delivered.append(message.message_id)
        return Ack.ACCEPTED

    async def close(self) -> None:
        self.closed = True


def make_message(sequence: int, device_id: str = "sensor-t-00000", **kw: Any) -> OutgoingMessage:
    return OutgoingMessage(
        device_id=device_id,
        boot_epoch=1_700_000_000,
        sequence=sequence,
        topic=f"sensors/{device_id}",
        payload={"timestamp": "2025-01-01T00:00:00.000Z", "temperature": 21.5},
        **kw,
    )


FAST = ResiliencePolicy(
    retry_max_attempts=3,
    retry_base=0.001,
    retry_max=0.005,
    breaker_fail_max=3,
    breaker_reset_timeout=0.15,
    buffer_size=100,
)


@pytest.fixture
def transport() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
def delivery(transport: FakeTransport) -> Delivery:
    return Delivery(transport, FAST, MessageStats())


def fast_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "fleet": "t",
        "profile": "generic",
        "device_count": 4,
        "publish_interval": 0.01,
        "drop_rate": 0.0,
        "jitter_rate": 0.0,
        "duplicate_rate": 0.0,
        "malformed_rate": 0.0,
        "retry_max_attempts": 3,
        "retry_base": 0.001,
        "retry_max": 0.005,
        "breaker_fail_max": 3,
        "breaker_reset_timeout": 0.15,
        "status_port": 0,
        "seed": 7,
        "boot_epoch": 1_700_000_000,
        "shutdown_timeout": 2.0,
    }
    return Settings(**{**base, **overrides})
