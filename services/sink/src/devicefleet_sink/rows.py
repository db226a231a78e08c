"""Decoded records → rows of ``iot_measurements`` and ``device_health_predictions``.
Pure functions."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import orjson

from devicefleet_common.schemas import DecodedRecord

COLUMNS = (
    "time",
    "device_id",
    "metric",
    "value",
    "value_text",
    "unit",
    "message_id",
    "profile",
    "component_type",
    "connector_mode",
    "attributes",
)

PREDICTION_COLUMNS = (
    "time",
    "device_id",
    "fleet",
    "message_id",
    "model_version",
    "state",
    "probabilities",
    "features",
    "features_source",
    "true_state",
)

Row = tuple[Any, ...]


def record_rows(record: DecodedRecord) -> list[Row]:
    """One row per measurement; they share the record's time and message id."""
    time = datetime.fromtimestamp(record.timestamp, tz=UTC)
    attributes = orjson.dumps(record.attributes).decode()
    return [
        (
            time,
            record.device_id,
            m.metric,
            m.value,
            m.value_text,
            m.unit,
            record.message_id,
            record.profile,
            record.component_type,
            record.connector_mode,
            attributes,
        )
        for m in record.measurements
    ]


def prediction_row(record: DecodedRecord) -> Row | None:
    """The health prediction made at this reading, if any (same time and message id)."""
    health = record.health
    if health is None:
        return None
    return (
        datetime.fromtimestamp(record.timestamp, tz=UTC),
        record.device_id,
        record.attributes.get("fleet"),
        record.message_id,
        health.model_version,
        health.state,
        orjson.dumps(health.probabilities).decode(),
        orjson.dumps(health.features).decode(),
        health.features_source,
        health.true_state,
    )


def days_of(rows: list[Row]) -> set[date]:
    return {row[0].date() for row in rows}
