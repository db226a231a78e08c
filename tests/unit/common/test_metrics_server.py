"""The metrics server's /ready: 503 with the reason until the service says it is ready; every
other path still serves the metrics."""

from __future__ import annotations

import httpx

from devicefleet_common.metrics import Readiness, serve_metrics
from tests.support import free_port


def test_ready_answers_the_reason_until_ready_and_metrics_stay_served() -> None:
    port = free_port()
    readiness = Readiness("not connected to the MQTT broker")
    serve_metrics(port, "127.0.0.1", readiness)
    base = f"http://127.0.0.1:{port}"

    not_ready = httpx.get(f"{base}/ready", timeout=2)  # bound before serve_metrics returns
    assert not_ready.status_code == 503
    assert not_ready.text == "not connected to the MQTT broker\n"

    readiness.reason = None
    ready = httpx.get(f"{base}/ready", timeout=2)
    assert (ready.status_code, ready.text) == (200, "ready\n")

    scrape = httpx.get(f"{base}/metrics", timeout=2)
    assert scrape.status_code == 200
    assert "# TYPE python_info gauge" in scrape.text

    readiness.reason = "the MQTT broker refused subscriptions"
    assert httpx.get(f"{base}/ready", timeout=2).status_code == 503
