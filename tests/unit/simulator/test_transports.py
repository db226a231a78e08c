from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from devicefleet_common.resilience import PermanentError, TransientError
from devicefleet_common.schemas import TelemetryBatchIn, TelemetryIn
from devicefleet_simulator.delivery import Delivery
from devicefleet_simulator.http_transport import (
    HttpBatchTransport,
    HttpTransport,
    classify_response,
    parse_retry_after,
)
from devicefleet_simulator.mqtt_transport import classify_puback
from devicefleet_simulator.stats import MessageStats
from devicefleet_simulator.transport import Ack

from .conftest import FAST, make_message


@pytest.mark.parametrize("status", [429, 503, 502, 504, 500, 408])
def test_transient_statuses(status: int) -> None:
    with pytest.raises(TransientError):
        classify_response(status)


@pytest.mark.parametrize("status", [400, 401, 404, 413, 422])
def test_permanent_statuses(status: int) -> None:
    with pytest.raises(PermanentError) as info:
        classify_response(status)
    assert info.value.status == status


def test_acks() -> None:
    assert classify_response(200) is Ack.ACCEPTED
    assert classify_response(202) is Ack.ACCEPTED
    assert classify_response(409) is Ack.DUPLICATE


def test_retry_after() -> None:
    with pytest.raises(TransientError) as info:
        classify_response(503, "7")
    assert info.value.retry_after == 7.0
    now = datetime(2025, 1, 1, 0, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Wed, 01 Jan 2025 00:00:30 GMT", now) == pytest.approx(30)
    assert parse_retry_after("garbage") is None
    assert parse_retry_after(None) is None


def test_puback_reason_codes() -> None:
    assert classify_puback(0x00) is Ack.ACCEPTED
    assert classify_puback(0x10) is Ack.ACCEPTED  # no matching subscribers
    with pytest.raises(TransientError):
        classify_puback(0x97)  # quota exceeded
    with pytest.raises(PermanentError):
        classify_puback(0x87)  # not authorized


def _delivery_against(responses: list[int | Exception]) -> tuple[Delivery, list[httpx.Request]]:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        result = responses.pop(0)
        if isinstance(result, Exception):
            raise result
        return httpx.Response(result, headers={"retry-after": "0"})

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    transport = HttpTransport("http://127.0.0.1:1", 1.0, client=client)
    return Delivery(transport, FAST, MessageStats()), requests


@pytest.mark.parametrize(
    "failure",
    [503, 429, httpx.ReadTimeout("slow"), httpx.ConnectError("refused")],
    ids=["503", "429", "timeout", "connect"],
)
async def test_transient_failures_are_retried(failure: int | Exception) -> None:
    delivery, requests = _delivery_against([failure, 200])
    await delivery.transport.start()
    delivery.submit(make_message(0))
    await delivery.wait_idle()
    assert len(requests) == 2
    assert delivery.stats.acknowledged == 1
    assert delivery.stats.retries == 1
    assert delivery.stats.failed_attempts == 1
    assert delivery.breaker_state == "closed"


@pytest.mark.parametrize(
    ("status", "field"), [(400, "rejected"), (413, "rejected"), (409, "acknowledged")]
)
async def test_permanent_failures_are_not_retried(status: int, field: str) -> None:
    # 409 on a first copy: an earlier attempt got through although its answer was lost.
    delivery, requests = _delivery_against([status, 200])
    await delivery.transport.start()
    delivery.submit(make_message(0))
    await delivery.wait_idle()
    assert len(requests) == 1
    assert getattr(delivery.stats, field) == 1
    assert delivery.stats.retries == 0
    assert delivery.breaker.fail_counter == 0


async def test_409_on_the_duplicate_copy_counts_as_duplicate_acknowledged() -> None:
    delivery, requests = _delivery_against([200, 409])
    await delivery.transport.start()
    delivery.submit(make_message(0, duplicate=True))
    await delivery.wait_idle()
    assert len(requests) == 2
    assert delivery.stats.acknowledged == 1
    assert delivery.stats.duplicated == 1
    assert delivery.stats.duplicates_acknowledged == 1
    assert delivery.stats.retries == 0


async def test_http_request_shape() -> None:
    delivery, requests = _delivery_against([200])
    await delivery.transport.start()
    delivery.submit(make_message(5))
    await delivery.wait_idle()
    (request,) = requests
    assert request.method == "POST"
    assert request.url.path == "/ingest"
    assert request.headers["message-id"] == make_message(5).message_id
    assert TelemetryIn.model_validate_json(request.content).sequence == 5


# --- edge gateway: HTTP batches -----------------------------------------------------------


def _batch_delivery(answer: Any, batch_max: int = 50) -> tuple[Delivery, list[httpx.Request]]:
    """``answer(request) -> httpx.Response``; every request is recorded."""
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return answer(request)  # type: ignore[no-any-return]

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    transport = HttpBatchTransport(
        "http://127.0.0.1:1", 1.0, batch_max=batch_max, linger=0.01, client=client
    )
    return Delivery(transport, FAST, MessageStats()), requests


def _items(request: httpx.Request) -> list[dict[str, Any]]:
    return orjson.loads(request.content)["messages"]  # type: ignore[no-any-return]


def _all_accepted(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/ingest/batch":
        results = [{"message_id": m["device_id"], "status": "accepted"} for m in _items(request)]
        return httpx.Response(200, json={"status": "accepted", "results": results})
    return httpx.Response(200, json={})


async def test_readings_sent_together_share_one_batch() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        items = _items(request)
        results = [{"message_id": "x", "status": "duplicate" if m["sequence"] == 1 else
                    "accepted"} for m in items]  # fmt: skip
        return httpx.Response(200, json={"status": "accepted", "results": results})

    delivery, requests = _batch_delivery(answer)
    await delivery.transport.start()
    for seq in range(5):
        delivery.submit(make_message(seq))
    await delivery.wait_idle()
    (request,) = requests
    assert request.url.path == "/ingest/batch"
    assert [m["sequence"] for m in _items(request)] == [0, 1, 2, 3, 4]
    assert TelemetryBatchIn.model_validate_json(request.content)  # what ingest accepts
    assert delivery.stats.acknowledged == 5  # a duplicate answer is an acknowledgement too


async def test_batch_max_sends_at_once() -> None:
    delivery, requests = _batch_delivery(_all_accepted, batch_max=2)
    await delivery.transport.start()
    for seq in range(5):
        delivery.submit(make_message(seq))
    await delivery.wait_idle()
    assert [len(_items(r)) for r in requests] == [2, 2, 1]
    assert delivery.stats.acknowledged == 5


async def test_an_invalid_batch_is_resent_reading_by_reading() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ingest/batch":
            return httpx.Response(400, json={"detail": "messages.2.payload: bad"})
        bad = TelemetryIn.model_validate_json(request.content).sequence == 2
        return httpx.Response(400 if bad else 200, json={})

    delivery, requests = _batch_delivery(answer)
    await delivery.transport.start()
    for seq in range(4):
        delivery.submit(make_message(seq))
    await delivery.wait_idle()
    assert [r.url.path for r in requests] == ["/ingest/batch"] + ["/ingest"] * 4
    assert (delivery.stats.acknowledged, delivery.stats.rejected) == (3, 1)


async def test_an_unavailable_backend_fails_the_whole_batch_and_delivery_retries() -> None:
    answers = [httpx.Response(503, headers={"retry-after": "0"})]

    def answer(request: httpx.Request) -> httpx.Response:
        return answers.pop(0) if answers else _all_accepted(request)

    delivery, requests = _batch_delivery(answer)
    await delivery.transport.start()
    drain = asyncio.create_task(delivery.run_drain())  # the failed batch opens the breaker
    for seq in range(3):
        delivery.submit(make_message(seq))
    async with asyncio.timeout(10):
        await delivery.wait_idle()
    drain.cancel()
    assert delivery.stats.acknowledged == 3
    assert delivery.stats.failed_attempts == 3  # each reading's attempt failed once
    sent = sorted(m["sequence"] for r in requests[1:] for m in _items(r))
    assert sent == [0, 1, 2]


async def test_a_malformed_reading_travels_alone() -> None:
    delivery, requests = _batch_delivery(
        lambda r: _all_accepted(r) if r.url.path == "/ingest/batch" else httpx.Response(400)
    )
    await delivery.transport.start()
    delivery.submit(make_message(0))
    delivery.submit(make_message(1, malformed="invalid-json"))
    await delivery.wait_idle()
    assert sorted(r.url.path for r in requests) == ["/ingest", "/ingest/batch"]
    assert (delivery.stats.acknowledged, delivery.stats.rejected) == (1, 1)


async def test_after_an_outage_the_gateway_catches_up_while_readings_keep_coming() -> None:
    """The drain flushes its chunk at once: were each round to wait for the linger time,
    new readings would keep the buffer from ever emptying (and delivery off the live path)."""
    down = True

    async def answer(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.01)
        if down:
            raise httpx.ConnectError("refused")
        return _all_accepted(request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    transport = HttpBatchTransport("http://127.0.0.1:1", 1.0, linger=0.2, client=client)
    delivery = Delivery(transport, FAST, MessageStats())
    await transport.start()
    drain = asyncio.create_task(delivery.run_drain())
    try:
        for seq in range(150):  # 50 readings/s for 3 s; the backend is back after 1 s
            delivery.submit(make_message(seq))
            await asyncio.sleep(0.02)
            down = seq < 50
        assert delivery.breaker_state == "closed"
        assert len(delivery.buffer) <= 5, "caught up, back on the live path"
        async with asyncio.timeout(5):
            await delivery.wait_idle()
    finally:
        drain.cancel()
    assert delivery.stats.acknowledged == 150


async def test_a_cancelled_reading_is_not_sent_later() -> None:
    """Shutdown cancels sends; their readings stay in the buffer, so a later flush (close)
    must not deliver them behind delivery's back."""
    delivery, requests = _batch_delivery(_all_accepted)
    transport = delivery.transport
    await transport.start()
    sending = asyncio.create_task(transport.send(make_message(0)))
    await asyncio.sleep(0)
    sending.cancel()
    await asyncio.gather(sending, return_exceptions=True)
    await transport.close()
    assert requests == []
