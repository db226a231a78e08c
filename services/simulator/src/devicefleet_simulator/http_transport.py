"""HTTP transport: POST ``{ingest_url}/ingest`` with a ``TelemetryIn`` body (seed 002)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
import orjson
from opentelemetry import propagate

from devicefleet_common.logging import get_logger
from devicefleet_common.resilience import PermanentError, TransientError
from devicefleet_common.schemas import MESSAGE_ID_HEADER
from devicefleet_simulator.message import OutgoingMessage
from devicefleet_simulator.transport import Ack

log = get_logger("devicefleet.simulator.http")

# 5xx other than these may be a bug rather than an overload, but a retry is still cheap and
# the breaker bounds the damage; 4xx other than 408/429 say the request itself is wrong.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Ingest refused the credentials: every message would be refused alike, so never retried.
AUTH_STATUSES = frozenset({401, 403})


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


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("reason", "")) if isinstance(body, dict) else ""


class HttpTransport:
    name = "http"

    def __init__(
        self,
        ingest_url: str,
        timeout: float,
        client: httpx.AsyncClient | None = None,
        token: str | None = None,
    ) -> None:
        self._url = f"{ingest_url.rstrip('/')}/ingest"
        self._timeout = timeout
        self._client = client  # injectable for tests; created on start() otherwise
        self._reachable = True
        self._auth = {"authorization": f"Bearer {token}"} if token else {}
        self._auth_refused = False  # logged once, not per message

    @property
    def ready(self) -> bool:
        return self._client is not None and self._reachable

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)

    async def send(self, message: OutgoingMessage) -> Ack:
        headers = {"content-type": "application/json", MESSAGE_ID_HEADER: message.message_id}
        propagate.inject(headers)  # traceparent of the message's span (the current one)
        response = await self._post(self._url, message.http_body(), headers)
        return classify_response(response.status_code, response.headers.get("retry-after"))

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        """One POST; no answer at all (timeout, refused, reset) is a ``TransientError``."""
        if self._client is None:
            raise TransientError("http client not started")
        try:
            response = await self._client.post(url, content=body, headers={**headers, **self._auth})
        except httpx.TimeoutException as exc:
            self._reachable = False
            raise TransientError(f"timeout: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            self._reachable = False
            raise TransientError(f"connection error: {type(exc).__name__}") from exc
        self._reachable = True
        if response.status_code in AUTH_STATUSES and not self._auth_refused:
            self._auth_refused = True
            log.error(
                "ingest refused this fleet's credentials; its messages are rejected",
                status=response.status_code,
                reason=_reason(response),
                token_sent=bool(self._auth),
            )
        return response

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()


@dataclass
class _Pending:
    message: OutgoingMessage
    ack: asyncio.Future[Ack]


class HttpBatchTransport(HttpTransport):
    """An edge gateway's uplink: readings sent within ``linger`` seconds of each other go out
    together in one ``POST /ingest/batch`` (at most ``batch_max``).

    Each reading still gets its own answer, so delivery's per-message retry, breaker and
    buffer work unchanged. A batch the server refuses as invalid (4xx) is re-sent one
    reading at a time, so one bad reading never takes good ones down with it.
    """

    name = "http"

    def __init__(
        self,
        ingest_url: str,
        timeout: float,
        batch_max: int = 200,
        linger: float = 0.2,
        client: httpx.AsyncClient | None = None,
        token: str | None = None,
    ) -> None:
        super().__init__(ingest_url, timeout, client, token)
        self._batch_url = f"{self._url}/batch"
        self._batch_max = batch_max
        self._linger = linger
        self._pending: list[_Pending] = []
        self._flusher: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()

    async def send(self, message: OutgoingMessage) -> Ack:
        if message.malformed:
            return await super().send(message)  # its own request: ingest must reject it alone
        loop = asyncio.get_running_loop()
        pending = _Pending(message, loop.create_future())
        self._pending.append(pending)
        if len(self._pending) >= self._batch_max:
            self.flush()
        elif self._flusher is None:
            self._flusher = loop.call_later(self._linger, self.flush)
        # Cancelled (shutdown): the batch may still get through; delivery keeps the message
        # and its next send is answered "duplicate", so nothing is counted twice.
        return await pending.ack

    def flush(self) -> None:
        """Send what is pending now (delivery calls this for a chunk of its buffer)."""
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        # A reading whose sender was cancelled (shutdown) went back to the buffer: not sent.
        batch = [item for item in self._pending if not item.ack.done()]
        self._pending = []
        if batch:
            task = asyncio.get_running_loop().create_task(self._post_batch(batch))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def _post_batch(self, batch: list[_Pending]) -> None:
        try:
            acks = await self._post_items(batch)
        except Exception as exc:  # every waiter gets the batch's fate
            for item in batch:
                if not item.ack.done():
                    item.ack.set_exception(exc)
            return
        for item, ack in zip(batch, acks, strict=True):
            if item.ack.done():  # its sender was cancelled
                continue
            if isinstance(ack, BaseException):
                item.ack.set_exception(ack)
            else:
                item.ack.set_result(ack)

    async def _post_items(self, batch: list[_Pending]) -> list[Ack | BaseException]:
        body = {"messages": [item.message.envelope() for item in batch]}
        response = await self._post(
            self._batch_url, orjson.dumps(body), {"content-type": "application/json"}
        )
        if response.status_code == 200:
            results = response.json().get("results", [])
            if len(results) != len(batch):
                raise TransientError(f"batch answer has {len(results)} of {len(batch)} results")
            return [
                Ack.DUPLICATE if r.get("status") == "duplicate" else Ack.ACCEPTED for r in results
            ]
        try:
            classify_response(response.status_code, response.headers.get("retry-after"))
        except PermanentError:
            if len(batch) == 1 or response.status_code in AUTH_STATUSES:
                raise  # refused credentials refuse each reading alike: no one-by-one resend
            # One reading spoilt the batch: each one alone, so only the bad one is refused.
            return await asyncio.gather(
                *(HttpTransport.send(self, item.message) for item in batch),
                return_exceptions=True,
            )
        raise TransientError(f"http {response.status_code}: unexpected answer to a batch")

    async def close(self) -> None:
        self.flush()
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        await super().close()
