"""Optional ledger: one line per message whose fate is settled, flushed at once.

Tests and benchmarks compare it with what reached the database: it is exactly what the
simulator believes was delivered, and why the rest was not. A line is the message id, then
a tab and a tag unless the message was acknowledged well-formed:

- ``malformed``: acknowledged although deliberately malformed (the pipeline is expected to
  dead-letter it rather than store it);
- ``dropped``: never sent, by the drop fault;
- ``rejected``: refused for good by the receiver (a 4xx other than 409/429).

So every sequence number a device generated is either stored or explained by a line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO

from devicefleet_simulator.message import OutgoingMessage

Fate = Literal["acknowledged", "dropped", "rejected"]


class Ledger:
    def __init__(self, path: str | None) -> None:
        self._file: TextIO | None = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115

    def record(self, message: OutgoingMessage, fate: Fate = "acknowledged") -> None:
        if self._file is None:
            return
        if fate != "acknowledged":
            suffix = f"\t{fate}"
        else:
            suffix = "\tmalformed" if message.malformed else ""
        self._file.write(f"{message.message_id}{suffix}\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass
class LedgerEntries:
    """A ledger read back: message ids by fate."""

    acknowledged: set[str] = field(default_factory=set)  # well-formed: must be stored once
    malformed: set[str] = field(default_factory=set)  # acknowledged, must be dead-lettered
    dropped: set[str] = field(default_factory=set)
    rejected: set[str] = field(default_factory=set)

    @property
    def acknowledged_total(self) -> int:
        return len(self.acknowledged) + len(self.malformed)


def read_ledger(*paths: Path) -> LedgerEntries:
    entries = LedgerEntries()
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            message_id, _, tag = line.partition("\t")
            getattr(entries, tag or "acknowledged").add(message_id)
    return entries
