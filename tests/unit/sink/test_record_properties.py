"""The sink's parser of ``decoded_iot_data`` values: a record is either refused by the schema
(the sink dead-letters it as ``invalid_record``) or becomes rows PostgreSQL can store. A value
that passed the schema but failed the database would fail its batch forever."""

from __future__ import annotations

import json
import math
from typing import Any

import pydantic
from hypothesis import example, given
from hypothesis import strategies as st

from devicefleet_common.schemas import (
    LATEST_TIMESTAMP,
    MAX_MESSAGE_ID_LENGTH,
    MAX_METRIC_LENGTH,
    DecodedRecord,
)
from devicefleet_sink.rows import COLUMNS, days_of, prediction_row, record_rows

texts = st.text(max_size=8) | st.just("a\x00b") | st.text(min_size=129, max_size=300)
numbers = st.floats() | st.integers() | st.just(LATEST_TIMESTAMP + 1) | st.just(-1e300)


@st.composite
def decoded_records(draw: st.DrawFn) -> dict[str, Any]:
    measurement = st.fixed_dictionaries(
        {"metric": texts},
        optional={"value": st.none() | numbers, "value_text": texts, "unit": texts},
    )
    return {
        "message_id": draw(texts),
        "device_id": draw(texts | st.just("sensor-1")),
        "timestamp": draw(numbers),
        "profile": draw(st.sampled_from(["truck", "f2", "generic", "other"])),
        "original_topic": draw(texts),
        "measurements": draw(st.lists(measurement, max_size=3)),
        "attributes": draw(
            st.dictionaries(texts, texts | st.integers() | st.just(2**64) | st.none(), max_size=2)
        ),
        "health": draw(
            st.none()
            | st.fixed_dictionaries(
                {
                    "model_version": texts,
                    "state": st.sampled_from(["normal", "degrading", "other"]),
                    "probabilities": st.dictionaries(texts, numbers, max_size=2),
                    "features": st.dictionaries(texts, numbers, max_size=2),
                    "features_source": st.sampled_from(["edge", "processor"]),
                }
            )
        ),
    }


def storable(value: bytes) -> None:
    try:
        record = DecodedRecord.model_validate_json(value)
    except pydantic.ValidationError:
        return  # dead-lettered by the sink
    rows = record_rows(record)
    prediction_row(record)
    days_of(rows)
    for row in rows:
        stored = dict(zip(COLUMNS, row, strict=True))
        assert not any("\x00" in v for v in row if isinstance(v, str))
        assert 0 < len(stored["metric"]) <= MAX_METRIC_LENGTH
        assert 0 < len(stored["message_id"]) <= MAX_MESSAGE_ID_LENGTH
        assert stored["value"] is None or math.isfinite(stored["value"])


@given(decoded_records())
@example(
    {
        "message_id": "m",
        "device_id": "d",
        "timestamp": 1.0,
        "profile": "truck",
        "original_topic": "t",
        "measurements": [{"metric": "x", "value": 1}],
        "attributes": {"fleet": 2**64},  # orjson.dumps raised: found by the fuzz job
    }
)
@example(
    {
        "message_id": "m",
        "device_id": "d",
        "timestamp": 1e20,  # datetime.fromtimestamp raised: the sink crashed on it
        "profile": "truck",
        "original_topic": "t",
        "measurements": [{"metric": "x", "value": 1}],
    }
)
def test_a_decoded_record_is_refused_or_storable(record: dict[str, Any]) -> None:
    storable(json.dumps(record).encode())  # NaN/Infinity literals included


@given(st.binary(max_size=200))
def test_any_bytes_are_refused_or_storable(value: bytes) -> None:
    storable(value)
