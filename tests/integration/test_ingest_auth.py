"""Ingest's bearer tokens on a real ingest process of the session pipeline (Kafka, processor,
sink, PostgreSQL): the denials, and that good data still arrives.

- no token, a token signed with another key, an altered token: 401 + ``WWW-Authenticate``,
  nothing in Kafka, counted and logged without the token;
- a valid token: 200 and the reading is stored;
- fleet A's token for fleet B's device: accepted by ingest (it has no device registry), then
  dead-lettered by the processor as ``fleet_mismatch``, never stored;
- a simulator with its fleet's token gets every message accepted, one with a bad token gets
  every message rejected (its ledger says so).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from devicefleet_common.credentials import ingest_token
from devicefleet_common.devices import device_id
from devicefleet_common.schemas import make_message_id
from devicefleet_simulator.ledger import read_ledger
from tests.integration.conftest import (
    Pipeline,
    dead_letters,
    json_lines,
    rows_for,
    wait_for_rows,
)
from tests.integration.test_simulators import final_summary, stored_ids
from tests.support import ServiceProcess, free_port, wait_for

KEY = secrets.token_urlsafe(36).encode()


@pytest.fixture(scope="module")
def secured_ingest(
    pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """An ingest of the session pipeline with bearer tokens required."""
    key_file = tmp_path_factory.mktemp("ingest-auth") / "ingest-token-key"
    key_file.write_bytes(KEY)
    key_file.chmod(0o600)
    port = free_port()
    process = ServiceProcess(
        f"ingest-auth-{port}",
        ["devicefleet-ingest"],
        pipeline.env["ingest"]
        | {"INGEST_PORT": str(port), "INGEST_AUTH_TOKEN_KEY_FILE": str(key_file)},
        pipeline.log_dir,
        health_url=f"http://127.0.0.1:{port}/health",
    ).start()
    yield process
    process.stop()


def url_of(process: ServiceProcess) -> str:
    return (process.health_url or "").removesuffix("/health")


def reading(dev: str, seq: int) -> dict[str, Any]:
    return {
        "device_id": dev,
        "boot_epoch": 1,
        "sequence": seq,
        "timestamp": datetime.now(UTC).isoformat(),
        "payload": {"temperature": 20.0 + seq},
    }


def unauthorized_count(process: ServiceProcess) -> float:
    text = httpx.get(f"{url_of(process)}/metrics", timeout=5).text
    [line] = [
        x for x in text.splitlines() if x.startswith('ingest_messages_total{outcome="unauthorized"')
    ]
    return float(line.split()[-1])


def test_missing_or_wrong_token_is_401(
    pipeline: Pipeline, secured_ingest: ServiceProcess, db: psycopg.Connection[Any]
) -> None:
    fleet = pipeline.fleet("auth-denied")
    pipeline.register("generic", fleet, 1)
    dev = device_id("generic", fleet, 0)
    good = ingest_token(KEY, fleet)
    other = pipeline.fleet("auth-other")
    wrong = {
        "none": {},
        "other-key": {"authorization": f"Bearer {ingest_token(b'x' * 40, fleet)}"},
        "altered-signature": {"authorization": f"Bearer {good[:-2]}AA"},
        # Another fleet's valid token with this fleet's name put in front of its signature.
        "altered-fleet": {
            "authorization": f"Bearer {fleet}.{ingest_token(KEY, other).rpartition('.')[2]}"
        },
        "basic": {"authorization": "Basic ZmxlZXQ6cGFzcw=="},
    }
    before = unauthorized_count(secured_ingest)
    for seq, (case, headers) in enumerate(wrong.items()):
        for path, body in (
            ("/ingest", reading(dev, seq)),
            ("/ingest/batch", {"messages": [reading(dev, seq)]}),
        ):
            response = httpx.post(
                f"{url_of(secured_ingest)}{path}", json=body, headers=headers, timeout=10
            )
            assert response.status_code == 401, (case, path, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer "), case
            assert response.json()["status"] == "unauthorized"
    assert unauthorized_count(secured_ingest) == before + 2 * len(wrong)

    # Nothing of it reached Kafka: the first valid message after them is the only one stored.
    response = httpx.post(
        f"{url_of(secured_ingest)}/ingest",
        json=reading(dev, 99),
        headers={"authorization": f"Bearer {good}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    wait_for_rows(db, make_message_id(dev, 1, 99))
    stored = db.execute(
        "SELECT DISTINCT message_id FROM iot_measurements WHERE device_id = %s", (dev,)
    ).fetchall()
    assert [r[0] for r in stored] == [make_message_id(dev, 1, 99)]

    # Logged with context, never with the token.
    lines = [
        x for x in json_lines(secured_ingest.logs()) if x.get("message") == "request unauthorized"
    ]
    assert len(lines) >= 2 * len(wrong)
    assert {x["reason"] for x in lines} >= {"missing bearer token", "invalid token"}
    assert good.rpartition(".")[2] not in secured_ingest.logs()
    assert ingest_token(KEY, other).rpartition(".")[2] not in secured_ingest.logs()


def test_valid_token_is_accepted_and_stored(
    pipeline: Pipeline, secured_ingest: ServiceProcess, db: psycopg.Connection[Any]
) -> None:
    fleet = pipeline.fleet("auth-ok")
    pipeline.register("generic", fleet, 2)
    headers = {"authorization": f"Bearer {ingest_token(KEY, fleet)}"}
    dev0, dev1 = device_id("generic", fleet, 0), device_id("generic", fleet, 1)
    single = httpx.post(
        f"{url_of(secured_ingest)}/ingest", json=reading(dev0, 1), headers=headers, timeout=10
    )
    assert single.status_code == 200, single.text
    batch = httpx.post(
        f"{url_of(secured_ingest)}/ingest/batch",
        json={"messages": [reading(dev0, 2), reading(dev1, 1)]},
        headers=headers,
        timeout=10,
    )
    assert batch.status_code == 200, batch.text
    for dev, seq in ((dev0, 1), (dev0, 2), (dev1, 1)):
        [row] = wait_for_rows(db, make_message_id(dev, 1, seq))
        assert row["attributes"]["fleet"] == fleet


def test_a_fleet_token_for_another_fleets_device_is_dead_lettered(
    pipeline: Pipeline, secured_ingest: ServiceProcess, db: psycopg.Connection[Any]
) -> None:
    mine, theirs = pipeline.fleet("auth-mine"), pipeline.fleet("auth-theirs")
    pipeline.register("generic", mine, 1)
    pipeline.register("generic", theirs, 1)
    victim = device_id("generic", theirs, 0)
    response = httpx.post(
        f"{url_of(secured_ingest)}/ingest",
        json=reading(victim, 1),
        headers={"authorization": f"Bearer {ingest_token(KEY, mine)}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text  # ingest cannot know the device's fleet

    headers = dead_letters(pipeline, victim)
    assert headers["dlq-reason"] == "fleet_mismatch"
    assert headers["dlq-stage"] == "processor"
    assert theirs in headers["dlq-detail"]
    assert mine in headers["dlq-detail"]
    time.sleep(1.0)  # the sink had its chance: still nothing stored for the victim
    assert rows_for(db, make_message_id(victim, 1, 1)) == []

    # The squatted message id is not a "duplicate" for its real owner: its reading is stored.
    response = httpx.post(
        f"{url_of(secured_ingest)}/ingest",
        json=reading(victim, 1),
        headers={"authorization": f"Bearer {ingest_token(KEY, theirs)}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    [row] = wait_for_rows(db, make_message_id(victim, 1, 1))
    assert row["attributes"]["fleet"] == theirs


@pytest.mark.parametrize("token_kind", ["valid", "bad"])
def test_simulator_with_valid_token_is_accepted_with_bad_token_rejected(
    pipeline: Pipeline,
    secured_ingest: ServiceProcess,
    db: psycopg.Connection[Any],
    tmp_path: Path,
    token_kind: str,
) -> None:
    fleet = pipeline.fleet(f"auth-sim-{token_kind}")
    devices, per_device = 3, 10
    pipeline.register("generic", fleet, devices)
    token = ingest_token(KEY if token_kind == "valid" else b"not-the-key" * 4, fleet)
    ledger = tmp_path / "ledger.txt"
    sim = pipeline.simulator(
        f"sim-auth-{token_kind}",
        "generic",
        "http",
        fleet,
        url_of(secured_ingest),
        ledger_path=ledger,
        ingest_token=token,
        device_count=devices,
        max_messages_per_device=per_device,
        publish_interval=0.05,
        drop_rate=0,
        jitter_rate=0,
        duplicate_rate=0,
        seed=7,
    ).start()
    assert sim.proc is not None
    assert sim.proc.wait(60) == 0, sim.log_tail()
    summary = final_summary(sim)
    entries = read_ledger(ledger)
    total = devices * per_device
    if token_kind == "valid":
        assert summary["acknowledged"] == total
        assert len(entries.acknowledged) == total
        assert not entries.rejected
        wait_for(
            lambda: stored_ids(db, fleet) == entries.acknowledged,
            60,
            message=f"the {total} messages of {fleet} in the database",
        )
    else:
        assert summary["rejected"] == total
        assert len(entries.rejected) == total
        assert not entries.acknowledged
        assert summary["retries"] == 0
        refusals = [
            x
            for x in json_lines(sim.logs())
            if "refused this fleet's credentials" in x.get("message", "")
        ]
        assert len(refusals) == 1  # once, not per message
        assert refusals[0]["status"] == 401
        assert token not in sim.logs()
        assert stored_ids(db, fleet) == set()
