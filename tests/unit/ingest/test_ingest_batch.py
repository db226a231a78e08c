"""POST /ingest/batch: all-or-nothing validation, per-item results, 503 on any failure."""

from __future__ import annotations

from .fakes import Api, reading


def test_batch_reports_each_item(api: Api) -> None:
    api.client.post("/ingest", json=reading(1))
    response = api.client.post(
        "/ingest/batch", json={"messages": [reading(1), reading(2), reading(3)]}
    )

    assert response.status_code == 200
    assert response.json()["results"] == [
        {"message_id": "sensor-1:1700000000:1", "status": "duplicate"},
        {"message_id": "sensor-1:1700000000:2", "status": "accepted"},
        {"message_id": "sensor-1:1700000000:3", "status": "accepted"},
    ]
    assert [r.key for r in api.producer.records] == [b"sensor-1"] * 3


def test_one_invalid_item_rejects_the_batch_naming_its_index(api: Api) -> None:
    response = api.client.post(
        "/ingest/batch", json={"messages": [reading(1), reading(2, device_id="")]}
    )

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["index"] == 1
    assert error["field"] == "messages[1].device_id"
    assert api.producer.records == []


def test_batch_size_limits(api: Api) -> None:
    too_many = {"messages": [reading(i) for i in range(1001)]}
    assert api.client.post("/ingest/batch", json=too_many).status_code == 400
    assert api.client.post("/ingest/batch", json={"messages": []}).status_code == 400


def test_failed_item_makes_batch_503_and_retry_sees_duplicates(api: Api) -> None:
    api.producer.fail_ids = {"sensor-1:1700000000:2"}
    batch = {"messages": [reading(1), reading(2)]}
    response = api.client.post("/ingest/batch", json=batch)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"

    api.producer.fail_ids = set()
    retry = api.client.post("/ingest/batch", json=batch)
    assert [r["status"] for r in retry.json()["results"]] == ["duplicate", "accepted"]
