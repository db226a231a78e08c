"""The pipeline end to end on real brokers: MQTT/HTTP → Kafka → processor → sink → PostgreSQL."""

from __future__ import annotations

import json
import re
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import psycopg
from confluent_kafka import Producer

from devicefleet_common.devices import device_id
from devicefleet_common.schemas import RawEnvelope, make_message_id
from devicefleet_common.topics import f2_topic, sensor_topic, truck_topic
from tests.integration.conftest import (
    KAFKA,
    MQTT_PORT,
    Pipeline,
    dead_letters,
    json_lines,
    rows_for,
    wait_for_rows,
)
from tests.integration.mqtt import publish
from tests.support import wait_for


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def reading(
    dev: str, seq: int, payload: dict[str, Any], topic: str | None = None, boot: int = 1
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "device_id": dev,
        "boot_epoch": boot,
        "sequence": seq,
        "timestamp": now_iso(),
        "payload": payload,
    }
    if topic:
        body["topic"] = topic
    return body


def metric_value(metrics_url: str, name: str, labels: str) -> float:
    text = httpx.get(metrics_url, timeout=5).text
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


TRUCK = {
    "engine_temp_c": 92.5,
    "oil_pressure_kpa": 310.0,
    "vibration_mm_s": 4.2,
    "rpm": 1650,
    "fuel_level_pct": 71.0,
    "speed_kmh": 32.0,
    "payload_t": 180.0,
}


def test_f2_mqtt_message_becomes_enriched_decoded_rows(
    pipeline: Pipeline, db: psycopg.Connection[Any]
) -> None:
    fleet = pipeline.fleet("f2-mqtt")
    pipeline.register("f2", fleet, 1)
    dev = device_id("f2", fleet, 0)
    mid = make_message_id(dev, 1, 0)
    payload = {
        "timestamp": now_iso(),
        "temperature": "00EB",
        "humidity": "01C2",
        "pressure": "2797",
    }
    publish(
        MQTT_PORT,
        f2_topic(dev, "access-control-mode", "rs485-sensors"),
        json.dumps(payload).encode(),
        message_id=mid,
    )

    rows = wait_for_rows(db, mid)
    decoded = {r["metric"]: (r["value"], r["unit"]) for r in rows}
    # Register values scaled by the registry's RS-485 calibration (0.1 per unit).
    assert decoded == {
        "humidity": (45.0, "%RH"),
        "pressure": (1013.5, "hPa"),
        "temperature": (23.5, "C"),
    }
    row = rows[0]
    assert row["device_id"] == dev
    assert row["profile"] == "f2"
    assert row["component_type"] == "rs485-sensors"
    assert row["connector_mode"] == "access-control-mode"
    assert row["attributes"] == {
        "fleet": fleet,
        "site": "test-site",
        "model": "F2 Smart Controller",
    }


def test_f2_boolean_and_reader_components_decode(
    pipeline: Pipeline, db: psycopg.Connection[Any]
) -> None:
    fleet = pipeline.fleet("f2-comp")
    pipeline.register("f2", fleet, 1)
    dev = device_id("f2", fleet, 0)
    doors, qr = make_message_id(dev, 1, 0), make_message_id(dev, 1, 1)
    publish(
        MQTT_PORT,
        f2_topic(dev, "access-control-mode", "door-sensors"),
        json.dumps(
            {"timestamp": now_iso(), "door-sensor-1": False, "door-sensor-2": True}
        ).encode(),
        message_id=doors,
    )
    publish(
        MQTT_PORT,
        f2_topic(dev, "access-control-mode", "qr-readers"),
        json.dumps({"timestamp": now_iso(), "qr-reader-1": "EMP-4711|2026"}).encode(),
        message_id=qr,
    )
    assert {(r["metric"], r["value"], r["unit"]) for r in wait_for_rows(db, doors)} == {
        ("door-sensor-1", 0.0, "state"),
        ("door-sensor-2", 1.0, "state"),
    }
    [reader] = wait_for_rows(db, qr)
    assert (reader["metric"], reader["value_text"]) == ("qr-reader-1", "EMP-4711|2026")


def test_truck_over_http_becomes_rows(pipeline: Pipeline, db: psycopg.Connection[Any]) -> None:
    fleet = pipeline.fleet("truck-http")
    pipeline.register("truck", fleet, 1)
    dev = device_id("truck", fleet, 0)
    body = reading(dev, 0, {"timestamp": now_iso(), **TRUCK}, topic=truck_topic(dev))
    response = httpx.post(f"{pipeline.ingest_url}/ingest", json=body, timeout=10)
    assert response.status_code == 200, response.text
    mid = make_message_id(dev, 1, 0)
    rows = wait_for_rows(db, mid)
    assert {r["metric"]: r["value"] for r in rows} == {k: float(v) for k, v in TRUCK.items()}
    assert {r["metric"]: r["unit"] for r in rows}["engine_temp_c"] == "C"


def test_duplicate_is_409_and_stored_once(pipeline: Pipeline, db: psycopg.Connection[Any]) -> None:
    fleet = pipeline.fleet("dup")
    pipeline.register("generic", fleet, 1)
    dev = device_id("generic", fleet, 0)
    body = reading(dev, 0, {"temperature": 21.5, "humidity": 40.0}, topic=sensor_topic(dev))
    first = httpx.post(f"{pipeline.ingest_url}/ingest", json=body, timeout=10)
    second = httpx.post(f"{pipeline.ingest_url}/ingest", json=body, timeout=10)
    assert first.status_code == 200, first.text
    assert second.status_code == 409, second.text
    mid = make_message_id(dev, 1, 0)
    wait_for_rows(db, mid)

    # The same message again over MQTT passes no ingest cache: the database key must drop it,
    # and the hourly rollup must not count it twice.
    sink_metrics = pipeline.services["sink"].health_url or ""
    before = metric_value(sink_metrics, "sink_rows_total", 'outcome="duplicate"')
    publish(
        MQTT_PORT,
        sensor_topic(dev),
        json.dumps(body["payload"] | {"timestamp": body["timestamp"]}).encode(),
        message_id=mid,
    )
    wait_for(
        lambda: metric_value(sink_metrics, "sink_rows_total", 'outcome="duplicate"') >= before + 2,
        30,
        message="the sink to see the duplicate rows",
    )
    assert len(rows_for(db, mid)) == 2
    samples = db.execute(
        "SELECT metric, samples FROM iot_hourly_stats WHERE device_id = %s ORDER BY metric", (dev,)
    ).fetchall()
    assert samples == [("humidity", 1), ("temperature", 1)]


def test_invalid_http_bodies_get_400_with_reason(pipeline: Pipeline) -> None:
    url = f"{pipeline.ingest_url}/ingest"
    missing = {"device_id": "sensor-x", "boot_epoch": 1, "timestamp": now_iso(), "payload": {}}
    response = httpx.post(url, json=missing, timeout=10)
    assert response.status_code == 400
    assert "sequence" in response.text
    wrong_type = reading("sensor-x", 0, {"temperature": 1.0}) | {"sequence": "seven"}
    response = httpx.post(url, json=wrong_type, timeout=10)
    assert response.status_code == 400
    assert "sequence" in response.text
    response = httpx.post(
        url, content=b"{not json", timeout=10, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400


def test_malformed_mqtt_payloads_are_dead_lettered_with_reason(pipeline: Pipeline) -> None:
    fleet = pipeline.fleet("malformed")
    pipeline.register("generic", fleet, 1)
    pipeline.register("f2", fleet, 1)
    generic = device_id("generic", fleet, 0)
    publish(MQTT_PORT, sensor_topic(generic), b"{truncated", message_id=f"{generic}:1:0")
    headers = dead_letters(pipeline, generic)
    assert headers["dlq-reason"] == "payload_not_json_object"
    assert headers["dlq-stage"] == "processor"
    assert headers["message-id"] == f"{generic}:1:0"

    f2 = device_id("f2", fleet, 0)
    publish(
        MQTT_PORT,
        f2_topic(f2, "access-control-mode", "rs485-sensors"),
        json.dumps({"timestamp": now_iso(), "temperature": "ZZZZ"}).encode(),
        message_id=f"{f2}:1:0",
    )
    headers = dead_letters(pipeline, f2)
    assert headers["dlq-reason"] == "invalid_value"
    assert "temperature" in headers["dlq-detail"]


def test_unknown_device_is_dead_lettered(pipeline: Pipeline) -> None:
    dev = f"sensor-unregistered-{pipeline.run_id}"
    response = httpx.post(
        f"{pipeline.ingest_url}/ingest",
        json=reading(dev, 0, {"temperature": 1.0}, topic=sensor_topic(dev)),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    headers = dead_letters(pipeline, dev)
    assert headers["dlq-reason"] == "unknown_device"
    # The dead letter keeps the original record for replay.
    assert json.loads(headers["_value"])["message_id"] == f"{dev}:1:0"


def test_hourly_aggregate_per_device_and_metric(
    pipeline: Pipeline, db: psycopg.Connection[Any]
) -> None:
    fleet = pipeline.fleet("hourly")
    pipeline.register("generic", fleet, 1)
    dev = device_id("generic", fleet, 0)
    for seq, temperature in enumerate((10.0, 20.0, 30.0)):
        response = httpx.post(
            f"{pipeline.ingest_url}/ingest",
            timeout=10,
            json=reading(dev, seq, {"temperature": temperature}, topic=sensor_topic(dev)),
        )
        assert response.status_code == 200, response.text
    for seq in range(3):
        wait_for_rows(db, make_message_id(dev, 1, seq))
    bucket, samples, low, high, avg = (
        db.execute(
            "SELECT bucket, samples, min, max, avg FROM iot_hourly_stats "
            "WHERE device_id = %s AND metric = 'temperature'",
            (dev,),
        ).fetchone()
        or (None,) * 5
    )
    assert (samples, low, high, avg) == (3, 10.0, 30.0, 20.0)
    assert bucket is not None
    assert (bucket.minute, bucket.second) == (0, 0)


def test_one_trace_id_in_ingest_processor_and_sink_logs(
    pipeline: Pipeline, db: psycopg.Connection[Any]
) -> None:
    fleet = pipeline.fleet("trace")
    pipeline.register("generic", fleet, 1)
    dev = device_id("generic", fleet, 0)
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    response = httpx.post(
        f"{pipeline.ingest_url}/ingest",
        timeout=10,
        headers={"traceparent": traceparent},
        json=reading(dev, 0, {"temperature": 5.0}, topic=sensor_topic(dev)),
    )
    assert response.status_code == 200, response.text
    mid = make_message_id(dev, 1, 0)
    wait_for_rows(db, mid)

    def logged_in(service: str) -> bool:
        lines = json_lines(pipeline.services[service].logs())
        return any(
            line.get("trace_id") == trace_id and line.get("message_id") == mid for line in lines
        )

    for service in ("ingest", "processor", "sink"):
        wait_for(
            lambda s=service: logged_in(s),
            10,  # type: ignore[misc]
            message=f"trace {trace_id} in the {service} log",
        )


def test_sink_killed_mid_batch_stores_every_message_exactly_once(
    pipeline: Pipeline, db: psycopg.Connection[Any]
) -> None:
    fleet = pipeline.fleet("sinkkill")
    devices = 20
    per_device = 250
    total = devices * per_device
    pipeline.register("generic", fleet, devices)
    producer = Producer({"bootstrap.servers": KAFKA, "linger.ms": 20})
    base = time.time() - 60
    for seq in range(per_device):
        for i in range(devices):
            dev = device_id("generic", fleet, i)
            envelope = RawEnvelope(
                message_id=make_message_id(dev, 7, seq),
                device_id=dev,
                original_topic=sensor_topic(dev),
                payload={"temperature": float(seq), "humidity": 50.0},
                timestamp=base + seq * 0.01,
                received_at=time.time(),
                source="mqtt",
            )
            producer.produce(
                pipeline.raw_topic, key=dev.encode(), value=orjson.dumps(envelope.model_dump())
            )
        producer.poll(0)
    assert producer.flush(30) == 0

    prefix = f"sensor-{fleet}-%"

    def stored() -> int:
        row = db.execute(
            "SELECT count(DISTINCT message_id) FROM iot_measurements WHERE device_id LIKE %s",
            (prefix,),
        ).fetchone()
        return int(row[0]) if row else 0

    wait_for(lambda: stored() > 0, 60, interval=0.05, message="the first rows")
    assert stored() < total, "sink finished before it could be killed; raise the volume"
    pipeline.services["sink"].kill()
    killed_at = stored()
    pipeline.restart("sink")

    wait_for(
        lambda: stored() == total,
        120,
        message=f"all {total} messages (had {killed_at} at the kill)",
    )
    rows, distinct = db.execute(
        "SELECT count(*), count(DISTINCT (message_id, metric)) FROM iot_measurements "
        "WHERE device_id LIKE %s",
        (prefix,),
    ).fetchone() or (0, 0)
    assert rows == distinct == 2 * total
    # Replayed rows must not be folded into the hourly rollup a second time.
    (samples,) = db.execute(
        "SELECT sum(samples) FROM iot_hourly_stats WHERE device_id LIKE %s", (prefix,)
    ).fetchone() or (0,)
    assert samples == 2 * total
