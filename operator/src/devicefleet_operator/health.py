"""Fresh health predictions per fleet, read from the pipeline's ``device_health`` table.

The sink keeps each device's newest prediction there; the operator only counts. One
connection is shared by every fleet's observation and re-opened after an error. Reads run in
worker threads, so they must never wait long: a read that finds another in progress gives
up at once (the fleet keeps its previous counts), and a database that stops answering
fails the read within seconds instead of holding a thread.
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


# Client-side bounds: statement_timeout needs a live server, tcp_user_timeout does not.
_CONNECT_OPTIONS: dict[str, Any] = {
    "connect_timeout": 3,
    "options": "-c statement_timeout=5000",
    "tcp_user_timeout": 5000,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 2,
}


class HealthReadBusy(Exception):
    """Another read is in progress; try at the next observation."""


class HealthReader:
    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    def fleet_states(self, fleet: str, stale_after: float) -> list[tuple[str, int, str | None]]:
        """(state, devices, newest model) of the fleet's fresh predictions; raises
        ``psycopg.Error`` when the database cannot answer, ``HealthReadBusy`` when another
        read holds the connection."""
        if not self._lock.acquire(blocking=False):
            HEALTH_READS.labels("busy").inc()
            raise HealthReadBusy(fleet)
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self._url, autocommit=True, **_CONNECT_OPTIONS)
            rows = self._conn.execute(_QUERY, (fleet, stale_after)).fetchall()
        except psycopg.Error:
            HEALTH_READS.labels("error").inc()
            self.close()
            raise
        finally:
            self._lock.release()
        HEALTH_READS.labels("ok").inc()
        return [(str(state), int(n), model) for state, n, model in rows]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
