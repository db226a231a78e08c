"""The simulator's bearer token: sent on every request, and a refusal (401/403) rejects the
message for good, without retries, and is logged once."""

from __future__ import annotations

import httpx
import pytest
from structlog.testing import capture_logs

from devicefleet_simulator.delivery import Delivery
from devicefleet_simulator.http_transport import HttpBatchTransport, HttpTransport
from devicefleet_simulator.simulator import build_transport
from devicefleet_simulator.stats import MessageStats

from .conftest import FAST, fast_settings, make_message

TOKEN = "iot.trucks.c2lnbmF0dXJl"


def _recording(status: int, requests: list[httpx.Request]) -> httpx.AsyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.url.path == "/ingest/batch" and status == 200:
            items = httpx.Response(200, content=request.content).json()["messages"]
            results = [{"message_id": "x", "status": "accepted"} for _ in items]
            return httpx.Response(200, json={"status": "accepted", "results": results})
        return httpx.Response(status, json={"status": "unauthorized", "reason": "invalid token"})

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_token_is_sent_as_bearer_header() -> None:
    requests: list[httpx.Request] = []
    transport = HttpTransport("http://127.0.0.1:1", 1.0, _recording(200, requests), TOKEN)
    delivery = Delivery(transport, FAST, MessageStats())
    await transport.start()
    delivery.submit(make_message(0))
    await delivery.wait_idle()
    [request] = requests
    assert request.headers["authorization"] == f"Bearer {TOKEN}"


async def test_no_token_no_header() -> None:
    requests: list[httpx.Request] = []
    transport = HttpTransport("http://127.0.0.1:1", 1.0, _recording(200, requests))
    delivery = Delivery(transport, FAST, MessageStats())
    await transport.start()
    delivery.submit(make_message(0))
    await delivery.wait_idle()
    assert "authorization" not in requests[0].headers


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
async def test_refused_credentials_reject_without_retry_and_log_once(
    status: int, batch: bool
) -> None:
    requests: list[httpx.Request] = []
    client = _recording(status, requests)
    transport = (
        HttpBatchTransport("http://127.0.0.1:1", 1.0, linger=0.01, client=client, token=TOKEN)
        if batch
        else HttpTransport("http://127.0.0.1:1", 1.0, client, TOKEN)
    )
    delivery = Delivery(transport, FAST, MessageStats())
    await transport.start()
    with capture_logs() as logs:
        for seq in range(4):
            delivery.submit(make_message(seq))
        await delivery.wait_idle()

    assert delivery.stats.rejected == 4
    assert delivery.stats.acknowledged == 0
    assert delivery.stats.retries == 0
    assert delivery.breaker.fail_counter == 0
    # A batch is refused once, not re-sent reading by reading.
    assert len(requests) == (1 if batch else 4)
    refusals = [e for e in logs if e["event"].startswith("ingest refused")]
    assert len(refusals) == 1
    assert refusals[0]["status"] == status
    assert refusals[0]["reason"] == "invalid token"
    assert TOKEN not in str(logs)


def test_settings_token_reaches_the_transport_and_stays_out_of_logs() -> None:
    settings = fast_settings(transport="http", ingest_token=TOKEN)
    assert TOKEN not in repr(settings)
    transport = build_transport(settings)
    assert isinstance(transport, HttpTransport)
    assert transport._auth == {"authorization": f"Bearer {TOKEN}"}
