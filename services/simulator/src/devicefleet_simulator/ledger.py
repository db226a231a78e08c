"""Optional ledger: one line per acknowledged message id, flushed at once.

Tests compare it with what reached the database: it is exactly what the simulator believes
was delivered. Messages acknowledged although deliberately malformed carry a ``\\tmalformed``
suffix, since the pipeline is expected to dead-letter rather than store them.
"""

from __future__ import annotations

from typing import TextIO

from devicefleet_simulator.message import OutgoingMessage


class Ledger:
    def __init__(self, path: str | None) -> None:
        self._file: TextIO | None = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115

    def record(self, message: OutgoingMessage) -> None:
        if self._file is None:
            return
        suffix = "\tmalformed" if message.malformed else ""
        self._file.write(f"{message.message_id}{suffix}\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
