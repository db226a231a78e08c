"""MQTT acknowledgements in receive order, each released only once Kafka has the record.

MQTT requires a client to send PUBACKs in the order the PUBLISHes arrived; Kafka acks can
come back out of order across partitions, so a delivered message waits for older ones.
"""

from __future__ import annotations

from collections import OrderedDict


class AckQueue:
    def __init__(self) -> None:
        # token -> (mqtt mid, delivered); token is unique, mids are reused by the broker.
        self._pending: OrderedDict[int, tuple[int, bool]] = OrderedDict()
        self._next_token = 0

    def add(self, mid: int) -> int:
        token = self._next_token
        self._next_token += 1
        self._pending[token] = (mid, False)
        return token

    def delivered(self, token: int) -> list[int]:
        """Mark one delivered; return the mids now ready to ack, oldest first."""
        if token in self._pending:
            self._pending[token] = (self._pending[token][0], True)
        ready: list[int] = []
        while self._pending:
            token, (mid, done) = next(iter(self._pending.items()))
            if not done:
                break
            del self._pending[token]
            ready.append(mid)
        return ready

    def clear(self) -> None:
        """Connection lost: the broker redelivers these, so never ack them on a new one."""
        self._pending.clear()

    def __len__(self) -> int:
        return len(self._pending)
