from __future__ import annotations

from datetime import UTC, date, datetime

from devicefleet_common.schemas import DecodedRecord, HealthPrediction, Measurement
from devicefleet_sink.rows import COLUMNS, PREDICTION_COLUMNS, days_of, prediction_row, record_rows


def test_one_row_per_measurement_sharing_time_and_message_id() -> None:
    record = DecodedRecord(
        message_id="d:1:0",
        device_id="d",
        timestamp=1_700_000_000.25,
        profile="f2",
        original_topic="cmnd/x",
        connector_mode="m",
        component_type="qr-readers",
        measurements=[
            Measurement(metric="a", value=1.0, unit="state"),
            Measurement(metric="b", value_text="raw"),
        ],
        attributes={"site": "s"},
    )
    rows = record_rows(record)
    assert len(rows) == 2
    first = dict(zip(COLUMNS, rows[0], strict=True))
    assert first["time"] == datetime.fromtimestamp(1_700_000_000.25, tz=UTC)
    assert (first["metric"], first["value"], first["message_id"]) == ("a", 1.0, "d:1:0")
    assert first["attributes"] == '{"site":"s"}'
    assert dict(zip(COLUMNS, rows[1], strict=True))["value_text"] == "raw"
    assert days_of(rows) == {date(2023, 11, 14)}


def test_a_prediction_row_shares_the_readings_time_and_message_id() -> None:
    record = DecodedRecord(
        message_id="truck-f-00000:1:9",
        device_id="truck-f-00000",
        timestamp=1_700_000_000.5,
        profile="truck",
        original_topic="trucks/truck-f-00000/telemetry",
        measurements=[Measurement(metric="rpm", value=1600.0)],
        attributes={"fleet": "f"},
        health=HealthPrediction(
            model_version="truck-health-v1",
            state="degrading",
            probabilities={"normal": 0.1, "degrading": 0.9},
            features={"rpm.mean": 1600.0},
            features_source="edge",
            true_state="degrading",
        ),
    )
    row = dict(zip(PREDICTION_COLUMNS, prediction_row(record) or (), strict=True))
    assert row["time"] == record_rows(record)[0][0]
    assert (row["message_id"], row["fleet"], row["state"]) == (
        "truck-f-00000:1:9",
        "f",
        "degrading",
    )
    assert row["features"] == '{"rpm.mean":1600.0}'
    assert row["true_state"] == "degrading"
    record.health = None
    assert prediction_row(record) is None
