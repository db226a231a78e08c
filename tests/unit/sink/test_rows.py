from __future__ import annotations

from datetime import UTC, date, datetime

from devicefleet_common.schemas import DecodedRecord, Measurement
from devicefleet_sink.rows import COLUMNS, days_of, record_rows


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
