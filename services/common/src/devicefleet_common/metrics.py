"""Prometheus helpers: a /metrics server and the breaker-state encoding every service shares."""

from __future__ import annotations

from prometheus_client import start_http_server

# circuit_breaker_state gauge values, also used by alert rules: 0 closed, 1 half-open, 2 open.
BREAKER_STATE_VALUES = {"closed": 0, "half-open": 1, "open": 2}


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Expose the default registry on http://host:port/metrics in a daemon thread."""
    start_http_server(port, addr=host)
