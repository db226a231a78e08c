"""Bad input through the real services (ingest, bridge, processor, sink on Kafka, Mosquitto,
PostgreSQL): each bad message is dead-lettered with its reason, and a good message sent after
all of them is still stored, so none of them stalled or crashed a stage."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from devicefleet_common.devices import device_id
from devicefleet_common.schemas import make_message_id
from devicefleet_common.topics import sensor_topic
from tests.integration.conftest import MQTT_PORT, Pipeline, dead_letters, wait_for_rows
from tests.integration.mqtt import publish


def iso(offset: timedelta = timedelta()) -> str:
    return (datetime.now(UTC) + offset).isoformat()


def reading(dev: str, payload: dict[str, Any], timestamp: str | None = None) -> dict[str, Any]:
    return {
        "device_id": dev,
        "boot_epoch": 1,
        "sequence": 0,
        "timestamp": timestamp or iso(),
        "topic": sensor_topic(dev),
        "payload": payload,
    }


def assert_still_flowing(pipeline: Pipeline, db: psycopg.Connection[Any], dev: str) -> None:
    response = httpx.post(
        f"{pipeline.ingest_url}/ingest", json=reading(dev, {"temperature": 20.5}), timeout=10
    )
    assert response.status_code == 200, response.text
    [row] = wait_for_rows(db, make_message_id(dev, 1, 0), timeout=60)
    assert row["value"] == 20.5
    for name, service in pipeline.services.items():
        assert service.alive(), f"{name} died:\n{service.log_tail()}"


def test_poison_readings_over_http_are_dead_lettered(
    pipeline: Pipeline, db: psycopg.Connection[Any]
) -> None:
    fleet = pipeline.fleet("poison-http")
    pipeline.register("generic", fleet, 6)
    devs = [device_id("generic", fleet, i) for i in range(6)]
    cases = [
        # crashed the processor on every redelivery (float(10**400) overflows)
        (reading(devs[0], {"temperature": 10**400}), "invalid_value"),
        # stalled the sink: PostgreSQL refuses NUL in text
        (reading(devs[1], {"temp\x00": 1.0}), "invalid_metric"),
        # stalled the sink: index row over PostgreSQL's btree limit
        (reading(devs[2], {"t" * 3000: 1.0}), "invalid_metric"),
        (reading(devs[3], {"temperature": 1.0}, iso(timedelta(days=2))), "timestamp_in_future"),
        (reading(devs[4], {"temperature": 1.0}, iso(-timedelta(days=40))), "timestamp_too_old"),
    ]
    for body, _ in cases:
        response = httpx.post(
            f"{pipeline.ingest_url}/ingest",
            content=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
            timeout=10,
        )
        assert response.status_code == 200, response.text  # the processor judges readings

    assert_still_flowing(pipeline, db, devs[5])
    for body, reason in cases:
        headers = dead_letters(pipeline, body["device_id"])
        assert (headers["dlq-reason"], headers["dlq-stage"]) == (reason, "processor")
        assert headers["dlq-detail"]
        assert json.loads(headers["_value"])["message_id"] == make_message_id(
            body["device_id"], 1, 0
        )


def test_bad_mqtt_payloads_are_dead_lettered_and_the_bridge_keeps_going(
    pipeline: Pipeline, db: psycopg.Connection[Any]
) -> None:
    fleet = pipeline.fleet("poison-mqtt")
    pipeline.register("generic", fleet, 7)
    devs = [device_id("generic", fleet, i) for i in range(7)]
    unknown = f"sensor-nobody-{pipeline.run_id}"
    cases = [
        (devs[0], b"\xff\xfe\x00\x01", "payload_not_json_object", "processor"),  # not UTF-8
        (devs[1], b'{"temperature": 2', "payload_not_json_object", "processor"),  # truncated
        (devs[2], json.dumps({"temperature": "hot"}).encode(), "invalid_value", "processor"),
        (
            devs[3],
            json.dumps({"timestamp": iso(timedelta(days=2)), "temperature": 1.0}).encode(),
            "timestamp_in_future",
            "processor",
        ),
        # too large for a Kafka record: stopped the bridge on every redelivery
        (
            devs[4],
            json.dumps({"temperature": 1.0, "blob": "x" * 1_500_000}).encode(),
            "payload_too_large",
            "bridge",
        ),
        (unknown, json.dumps({"temperature": 1.0}).encode(), "unknown_device", "processor"),
    ]
    for dev, payload, _, _ in cases:
        publish(MQTT_PORT, sensor_topic(dev), payload, message_id=make_message_id(dev, 1, 0))
    good = devs[6]
    publish(
        MQTT_PORT,
        sensor_topic(good),
        json.dumps({"timestamp": iso(), "temperature": 20.5}).encode(),
        message_id=make_message_id(good, 2, 0),
    )

    [row] = wait_for_rows(db, make_message_id(good, 2, 0), timeout=60)
    assert row["value"] == 20.5
    for dev, _, reason, stage in cases:
        headers = dead_letters(pipeline, dev)
        assert (headers["dlq-reason"], headers["dlq-stage"]) == (reason, stage), dev
        assert headers["message-id"] == make_message_id(dev, 1, 0)
    assert pipeline.services["bridge"].alive(), pipeline.services["bridge"].log_tail()


def test_body_larger_than_a_kafka_record_is_refused(pipeline: Pipeline) -> None:
    """Under the API's 1 MiB body limit but over Kafka's 1 MB record: a 4xx the device must
    not retry, never a 503 it would retry forever."""
    dev = f"sensor-big-{pipeline.run_id}"
    body = reading(dev, {"blob": "x" * 1_040_000})
    response = httpx.post(f"{pipeline.ingest_url}/ingest", json=body, timeout=30)

    assert response.status_code == 413, response.text
    assert "exceeds" in response.json()["reason"]
