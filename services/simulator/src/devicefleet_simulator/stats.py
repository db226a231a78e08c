"""Message counters behind ``/status`` and the summary line.

Every generated message is in exactly one place at any time, which gives the invariant
``generated == acknowledged + rejected + dropped + buffered + inFlight + bufferOverflow``.
Duplicated copies are extra sends of an already counted message.
"""

from __future__ import annotations

from dataclasses import dataclass

from devicefleet_simulator import metrics
from devicefleet_simulator.status import MessageCounts

# stats field -> simulator_messages_total outcome label
_OUTCOMES = {
    "generated": "generated",
    "acknowledged": "acknowledged",
    "duplicates_acknowledged": "duplicate_acknowledged",
    "rejected": "rejected",
    "dropped": "dropped",
    "duplicated": "duplicated",
    "malformed": "malformed",
    "buffer_overflow": "buffer_overflow",
}


@dataclass
class MessageStats:
    generated: int = 0
    acknowledged: int = 0
    duplicates_acknowledged: int = 0
    rejected: int = 0
    failed_attempts: int = 0
    retries: int = 0
    dropped: int = 0
    duplicated: int = 0
    malformed: int = 0
    buffer_overflow: int = 0
    in_flight: int = 0

    def count(self, name: str, n: int = 1) -> None:
        setattr(self, name, getattr(self, name) + n)
        if name in _OUTCOMES:
            metrics.MESSAGES.labels(_OUTCOMES[name]).inc(n)

    def snapshot(self, buffered: int) -> MessageCounts:
        return MessageCounts(
            generated=self.generated,
            acknowledged=self.acknowledged,
            duplicates_acknowledged=self.duplicates_acknowledged,
            rejected=self.rejected,
            failed_attempts=self.failed_attempts,
            retries=self.retries,
            dropped=self.dropped,
            duplicated=self.duplicated,
            malformed=self.malformed,
            buffered=buffered,
            buffer_overflow=self.buffer_overflow,
            in_flight=self.in_flight,
        )
