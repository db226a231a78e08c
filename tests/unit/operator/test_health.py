"""The health reader never makes a worker thread wait for another fleet's read."""

from __future__ import annotations

import pytest

from devicefleet_operator.health import HealthReadBusy, HealthReader


def test_a_read_in_progress_makes_the_next_one_give_up_at_once() -> None:
    reader = HealthReader("postgresql://127.0.0.1:1/none")
    reader._lock.acquire()  # another fleet's read, stuck on a dead connection
    try:
        with pytest.raises(HealthReadBusy):
            reader.fleet_states("ns.fleet", 300)
    finally:
        reader._lock.release()
