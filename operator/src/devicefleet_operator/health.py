"""Fresh health predictions per fleet, read from the pipeline's ``device_health`` table.

The sink keeps each device's newest prediction there; the operator only counts. One
connection is shared by every fleet's observation and re-opened after an error.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
from prometheus_client import Counter

from devicefleet_common.logging import get_logger

log = get_logger("devicefleet.operator.health")

HEALTH_READS = Counter(
    "devicefleet_operator_health_reads_total",
    "Reads of a fleet's health predictions",
    ["outcome"],
)

_QUERY = """
SELECT state, count(*)::int, max(model_version)
  FROM device_health
 WHERE fleet = %s AND time > now() - make_interval(secs => %s)
 GROUP BY state
"""


class HealthReader:
    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    def fleet_states(self, fleet: str, stale_after: float) -> list[tuple[str, int, str | None]]:
        """(state, devices, newest model) of the fleet's fresh predictions; raises
        ``psycopg.Error`` when the database cannot answer."""
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self._url, connect_timeout=3, autocommit=True)
                rows = self._conn.execute(_QUERY, (fleet, stale_after)).fetchall()
            except psycopg.Error:
                HEALTH_READS.labels("error").inc()
                self.close()
                raise
        HEALTH_READS.labels("ok").inc()
        return [(str(state), int(n), model) for state, n, model in rows]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
