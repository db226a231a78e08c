"""Batched, idempotent writes into PostgreSQL.

A batch is COPYed into a session-local staging table, then moved into ``iot_measurements``
with ``ON CONFLICT DO NOTHING`` in the same statement that folds exactly the newly inserted
rows into ``iot_hourly_stats``. A replayed batch therefore changes neither table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg
from prometheus_client import Counter, Histogram

from devicefleet_sink.rows import COLUMNS, PREDICTION_COLUMNS, Row, days_of

DB_QUERY_DURATION = Histogram(
    "db_query_duration_seconds", "PostgreSQL statement latency", ["operation"]
)
DB_ERRORS = Counter("db_errors_total", "PostgreSQL errors", ["operation"])

_COLS = ", ".join(COLUMNS)
_MERGE = f"""
WITH inserted AS (
    INSERT INTO iot_measurements ({_COLS})
    SELECT {_COLS} FROM sink_staging
    ON CONFLICT DO NOTHING
    RETURNING time, device_id, metric, value
), rolled_up AS (
    INSERT INTO iot_hourly_stats AS s (bucket, device_id, metric, samples, sum, min, max)
    SELECT date_trunc('hour', time), device_id, metric, count(*), sum(value), min(value),
           max(value)
    FROM inserted
    WHERE value IS NOT NULL
    GROUP BY 1, 2, 3
    ON CONFLICT (bucket, device_id, metric) DO UPDATE
       SET samples = s.samples + excluded.samples,
           sum = s.sum + excluded.sum,
           min = least(s.min, excluded.min),
           max = greatest(s.max, excluded.max)
    RETURNING 1
)
SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM rolled_up)
"""  # noqa: S608 - column names are constants


_PCOLS = ", ".join(PREDICTION_COLUMNS)
# Only newly inserted predictions move a device's latest verdict, and never backwards in time.
_MERGE_PREDICTIONS = f"""
WITH inserted AS (
    INSERT INTO device_health_predictions ({_PCOLS})
    SELECT {_PCOLS} FROM sink_prediction_staging
    ON CONFLICT DO NOTHING
    RETURNING time, device_id, fleet, message_id, model_version, state
), latest AS (
    SELECT DISTINCT ON (device_id) * FROM inserted ORDER BY device_id, time DESC
), moved AS (
    INSERT INTO device_health AS h (device_id, fleet, time, message_id, model_version, state)
    SELECT device_id, fleet, time, message_id, model_version, state FROM latest
    ON CONFLICT (device_id) DO UPDATE
       SET fleet = excluded.fleet, time = excluded.time, message_id = excluded.message_id,
           model_version = excluded.model_version, state = excluded.state, updated_at = now()
       WHERE excluded.time >= h.time
    RETURNING 1
)
SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM moved)
"""  # noqa: S608 - column names are constants


@dataclass(frozen=True)
class WriteResult:
    inserted: int
    duplicates: int
    hourly_buckets: int
    predictions_inserted: int = 0


class MeasurementWriter:
    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._conn: psycopg.Connection[Any] | None = None
        self._partitions: set[date] = set()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._url, connect_timeout=5)
            # date_trunc('hour', ...) on timestamptz follows the session time zone.
            self._conn.execute("SET TIME ZONE 'UTC'")
            for staging, table in (
                ("sink_staging", "iot_measurements"),
                ("sink_prediction_staging", "device_health_predictions"),
            ):
                self._conn.execute(
                    f"CREATE TEMP TABLE IF NOT EXISTS {staging} "
                    f"(LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                )
            self._conn.commit()
        return self._conn

    def _timed(self, operation: str, started: float) -> None:
        DB_QUERY_DURATION.labels(operation).observe(time.perf_counter() - started)

    def write(self, rows: list[Row], predictions: list[Row] | None = None) -> WriteResult:
        """Write rows idempotently in one transaction. Raises ``psycopg.Error`` on failure,
        after which the connection is discarded and the caller retries the same rows."""
        try:
            conn = self._connection()
            new_days = days_of(rows) - self._partitions
            for day in sorted(new_days):
                started = time.perf_counter()
                conn.execute("SELECT devicefleet_ensure_partition(%s)", (day,))
                self._timed("ensure_partition", started)
            conn.commit()
            with conn.transaction(), conn.cursor() as cur:
                started = time.perf_counter()
                with cur.copy(f"COPY sink_staging ({_COLS}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                self._timed("copy", started)
                started = time.perf_counter()
                inserted, buckets = cur.execute(_MERGE).fetchone() or (0, 0)
                self._timed("merge", started)
                predicted = self._merge_predictions(cur, predictions or [])
            self._partitions |= new_days
        except psycopg.Error:
            DB_ERRORS.labels("write").inc()
            self.close()
            raise
        return WriteResult(inserted, len(rows) - inserted, buckets, predicted)

    def _merge_predictions(self, cur: psycopg.Cursor[Any], predictions: list[Row]) -> int:
        """In the readings' transaction: a prediction is stored exactly when its reading is."""
        if not predictions:
            return 0
        started = time.perf_counter()
        with cur.copy(f"COPY sink_prediction_staging ({_PCOLS}) FROM STDIN") as copy:
            for row in predictions:
                copy.write_row(row)
        inserted, _ = cur.execute(_MERGE_PREDICTIONS).fetchone() or (0, 0)
        self._timed("merge_predictions", started)
        return int(inserted)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
