"""Cached view of the ``device_parameters`` table.

A full re-read runs every ``refresh_seconds``; a device not in the cache is looked up on its
own (at most once per ``miss_ttl`` per device), so new devices are found at once and unknown
ones cost one query per TTL. Database errors raise ``RegistryUnavailable``: "unknown device"
is only ever said when the database answered that the device does not exist.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from prometheus_client import Counter, Gauge, Histogram
from psycopg.rows import dict_row

from devicefleet_common.logging import get_logger
from devicefleet_processor.decoders import DeviceParams

log = get_logger(__name__)

DB_QUERY_DURATION = Histogram(
    "db_query_duration_seconds", "PostgreSQL query latency", ["operation"]
)
DB_QUERIES = Counter("db_queries_total", "PostgreSQL queries", ["operation", "outcome"])
REGISTRY_DEVICES = Gauge("processor_registry_devices", "Devices in the registry cache")

_COLUMNS = "device_id, profile, fleet, site, model, params"


class RegistryUnavailable(Exception):
    pass


def _row_to_params(row: dict[str, Any]) -> DeviceParams:
    return DeviceParams(
        device_id=row["device_id"],
        profile=row["profile"],
        fleet=row["fleet"],
        site=row["site"],
        model=row["model"],
        params=row["params"] or {},
    )


class DeviceRegistry:
    def __init__(self, database_url: str, refresh_seconds: float, miss_ttl: float) -> None:
        self._url = database_url
        self._refresh_seconds = refresh_seconds
        self._miss_ttl = miss_ttl
        self._conn: psycopg.Connection[dict[str, Any]] | None = None
        self._devices: dict[str, DeviceParams] = {}
        self._misses: dict[str, float] = {}
        self._refreshed_at = 0.0

    def _query(
        self, operation: str, sql: str, params: tuple[Any, ...] = ()
    ) -> list[dict[str, Any]]:
        started = time.perf_counter()
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(
                    self._url, autocommit=True, row_factory=dict_row, connect_timeout=5
                )
            rows = self._conn.execute(sql, params).fetchall()
        except psycopg.Error as exc:
            DB_QUERIES.labels(operation, "error").inc()
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            raise RegistryUnavailable(f"{operation}: {exc}") from exc
        DB_QUERIES.labels(operation, "ok").inc()
        DB_QUERY_DURATION.labels(operation).observe(time.perf_counter() - started)
        return rows

    def refresh(self) -> None:
        rows = self._query("registry_refresh", f"SELECT {_COLUMNS} FROM device_parameters")  # noqa: S608
        self._devices = {row["device_id"]: _row_to_params(row) for row in rows}
        self._misses.clear()
        self._refreshed_at = time.monotonic()
        REGISTRY_DEVICES.set(len(self._devices))
        log.debug("registry refreshed", devices=len(self._devices))

    def refresh_if_stale(self) -> None:
        if time.monotonic() - self._refreshed_at >= self._refresh_seconds:
            try:
                self.refresh()
            except RegistryUnavailable as exc:
                # Keep serving the cached registry; misses will still consult the database.
                log.warning("registry refresh failed, using cached registry", error=str(exc))
                self._refreshed_at = time.monotonic()

    def get(self, device_id: str) -> DeviceParams | None:
        """The device's parameters, or None if the database says it is not registered."""
        if (device := self._devices.get(device_id)) is not None:
            return device
        now = time.monotonic()
        if now - self._misses.get(device_id, -1e18) < self._miss_ttl:
            return None
        rows = self._query(
            "registry_lookup",
            f"SELECT {_COLUMNS} FROM device_parameters WHERE device_id = %s",  # noqa: S608
            (device_id,),
        )
        if not rows:
            self._misses[device_id] = now
            return None
        device = self._devices[device_id] = _row_to_params(rows[0])
        REGISTRY_DEVICES.set(len(self._devices))
        return device

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
