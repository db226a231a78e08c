"""HTTP transport: POST ``{ingest_url}/ingest`` with a ``TelemetryIn`` body (seed 002)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
from opentelemetry import propagate

from devicefleet_common.resilience import PermanentError, TransientError
from devicefleet_common.schemas import MESSAGE_ID_HEADER
from devicefleet_simulator.message import OutgoingMessage
from devicefleet_simulator.transport import Ack

# 5xx other than these may be a bug rather than an overload, but a retry is still cheap and
# the breaker bounds the damage; 4xx other than 408/429 say the request itself is wrong.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def classify_response(status: int, retry_after: str | None = None) -> Ack:
    if 200 <= status < 300:
        return Ack.ACCEPTED
    if status == 409:
        return Ack.DUPLICATE
    if status in TRANSIENT_STATUSES or status >= 500:
        raise TransientError(f"http {status}", retry_after=parse_retry_after(retry_after))
    raise PermanentError(f"http {status}", status=status)


class HttpTransport:
    name = "http"

    def __init__(
        self, ingest_url: str, timeout: float, client: httpx.AsyncClient | None = None
    ) -> None:
        self._url = f"{ingest_url.rstrip('/')}/ingest"
        self._timeout = timeout
        self._client = client  # injectable for tests; created on start() otherwise
        self._reachable = True

    @property
    def ready(self) -> bool:
        return self._client is not None and self._reachable

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)

    async def send(self, message: OutgoingMessage) -> Ack:
        if self._client is None:
            raise TransientError("http client not started")
        headers = {"content-type": "application/json", MESSAGE_ID_HEADER: message.message_id}
        propagate.inject(headers)  # traceparent of the message's span (the current one)
        try:
            response = await self._client.post(
                self._url, content=message.http_body(), headers=headers
            )
        except httpx.TimeoutException as exc:
            self._reachable = False
            raise TransientError(f"timeout: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            self._reachable = False
            raise TransientError(f"connection error: {type(exc).__name__}") from exc
        self._reachable = True
        return classify_response(response.status_code, response.headers.get("retry-after"))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
