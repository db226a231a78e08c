"""The contract between the delivery logic and a wire protocol.

``send`` makes exactly one attempt and either returns how the far side acknowledged the
message or raises ``TransientError`` (worth retrying, counts against the breaker) or
``PermanentError`` (never retried, proves the far side is up).
"""

from __future__ import annotations

import enum
from typing import Protocol

from devicefleet_simulator.message import OutgoingMessage


class Ack(enum.Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # the far side already had this message id (HTTP 409)


class Transport(Protocol):
    name: str

    @property
    def ready(self) -> bool:
        """Connected (MQTT) or last request reached the server (HTTP)."""
        ...

    async def start(self) -> None: ...

    async def send(self, message: OutgoingMessage) -> Ack: ...

    async def close(self) -> None: ...
