"""Prometheus helpers: a /metrics server (with /ready where a service has a readiness) and the
breaker-state encoding every service shares."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app, start_http_server

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

# circuit_breaker_state gauge values, also used by alert rules: 0 closed, 1 half-open, 2 open.
BREAKER_STATE_VALUES = {"closed": 0, "half-open": 1, "open": 2}


class Readiness:
    """Why a service is not ready, or None once it is; ``/ready`` on the metrics port answers
    200 "ready" or 503 with the reason. Set from any thread (one attribute write)."""

    def __init__(self, reason: str | None = None) -> None:
        self.reason = reason


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Probes and scrapes every few seconds: not worth a log line each."""


def serve_metrics(port: int, host: str = "127.0.0.1", readiness: Readiness | None = None) -> None:
    """Expose the default registry on http://host:port/metrics in a daemon thread, and
    ``readiness`` on /ready when given."""
    if readiness is None:
        start_http_server(port, addr=host)
        return
    metrics = make_wsgi_app()

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/ready":
            scrape: Iterable[bytes] = metrics(environ, start_response)
            return scrape
        reason = readiness.reason
        body = f"{reason or 'ready'}\n".encode()
        start_response(
            "200 OK" if reason is None else "503 Service Unavailable",
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]

    class Server(_Server):
        # Like prometheus_client's: an IPv6 host ("::") needs an IPv6 socket.
        address_family = socket.getaddrinfo(host, port)[0][0]

    server: WSGIServer = make_server(host, port, app, Server, _QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
