"""HTTP request metrics labelled by route template (bounded cardinality), as a pure ASGI
middleware so it never wraps the body stream or cancels a request."""

from __future__ import annotations

import time

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from devicefleet_common.logging import get_logger
from devicefleet_ingest import models
from devicefleet_ingest.metrics import INGEST_PATHS, IngestMetrics

log = get_logger("devicefleet.ingest")


def route_template(scope: Scope) -> str:
    """``/ingest`` rather than the raw path, so label cardinality stays bounded."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    # Refused before routing (413 on Content-Length): these paths have no parameters.
    return str(scope["path"]) if scope["path"] in INGEST_PATHS else "unmatched"


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: IngestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            template = route_template(scope)
            method = scope["method"]
            self.metrics.http_requests.labels(method, template, str(status)).inc()
            self.metrics.http_duration.labels(method, template).observe(
                time.perf_counter() - started
            )


class ContentLengthLimitMiddleware:
    """Refuse a declared oversize body before reading it, with the API's JSON 413.

    Chunked bodies without Content-Length are cut off while being read by FastAPI's own
    ``max_body_size`` limit on the routes (answered by the same 413 handler).
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, metrics: IngestMetrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = Headers(scope=scope).get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_body_bytes:
                if scope["path"] in INGEST_PATHS:
                    self.metrics.reject()
                reason = f"request body exceeds {self.max_body_bytes} bytes"
                log.info("request rejected", status=413, reason=reason)
                response = JSONResponse(models.Rejected(reason=reason).model_dump(), 413)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
