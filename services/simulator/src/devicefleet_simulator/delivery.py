"""Getting messages out: retry (tenacity) around a circuit breaker (pybreaker), and a
bounded in-order buffer while the breaker is not closed.

- Live path: each generated message is sent by its own task, retried with exponential
  backoff + jitter on transient failures only. Every attempt goes through the breaker.
- While the breaker is open or half-open, or the buffer still holds older messages, new
  messages join the buffer's tail, so delivery order is kept.
- One drain task owns the buffer: it waits out the reset timeout, sends the head message as
  the half-open probe, and once the breaker closes empties the buffer oldest first, up to
  ``drain_batch`` messages at a time.
- A message whose retries are exhausted while the breaker stays closed goes back to the
  buffer; the only way a generated, non-dropped message is lost is a full buffer
  (``bufferOverflow``).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from tenacity import RetryCallState

from devicefleet_common.logging import get_logger
from devicefleet_common.metrics import BREAKER_STATE_VALUES
from devicefleet_common.resilience import (
    CircuitBreakerError,
    PermanentError,
    TransientError,
    circuit_breaker,
    transient_retry,
)
from devicefleet_simulator import metrics
from devicefleet_simulator.ledger import Ledger
from devicefleet_simulator.message import OutgoingMessage
from devicefleet_simulator.profiles.base import rfc3339
from devicefleet_simulator.stats import MessageStats
from devicefleet_simulator.status import BreakerState, BreakerStatus
from devicefleet_simulator.transport import Ack, Transport

log = get_logger("devicefleet.simulator.delivery")


NOT_DELIVERED = (TransientError, CircuitBreakerError)
# pybreaker's clock (datetime) and ours (monotonic) differ slightly; probe a bit later.
_CLOCK_SLACK = 0.01


@dataclass(frozen=True)
class ResiliencePolicy:
    retry_max_attempts: int = 5
    retry_base: float = 1.0
    retry_max: float = 30.0
    breaker_fail_max: int = 5
    breaker_reset_timeout: float = 60.0
    buffer_size: int = 10000
    drain_batch: int = 100  # buffered messages sent at once once the breaker has closed


@dataclass(frozen=True)
class _Kept:
    """A buffered message that stays buffered; ``pause``: wait before the next try."""

    pause: bool


def _order_of(message: OutgoingMessage) -> int:
    return message.order


@contextlib.contextmanager
def message_context(message: OutgoingMessage) -> Iterator[None]:
    """Logs inside carry device_id, message_id and the message's trace_id."""
    span_cm = (
        trace.use_span(message.span, end_on_exit=False)
        if message.span is not None
        else contextlib.nullcontext()
    )
    with (
        span_cm,
        structlog.contextvars.bound_contextvars(
            device_id=message.device_id, message_id=message.message_id
        ),
    ):
        yield


def bind_message(message: OutgoingMessage) -> None:
    """``message_context`` for a task of the message's own: the task's context copy dies
    with it, so nothing needs restoring, which saves most of the cost at thousands of
    messages per second."""
    structlog.contextvars.bind_contextvars(
        device_id=message.device_id, message_id=message.message_id
    )
    if message.span is not None:
        otel_context.attach(trace.set_span_in_context(message.span))


class Delivery:
    def __init__(
        self,
        transport: Transport,
        policy: ResiliencePolicy,
        stats: MessageStats,
        ledger: Ledger | None = None,
    ) -> None:
        self.transport = transport
        self.policy = policy
        self.stats = stats
        self.ledger = ledger or Ledger(None)
        self.name = transport.name
        self.breaker = circuit_breaker(
            self.name,
            fail_max=policy.breaker_fail_max,
            reset_timeout=policy.breaker_reset_timeout,
            on_transition=self._on_transition,
            on_failure=self._on_failure,
        )
        # Cancelling at shutdown says nothing about the far side's health.
        self.breaker.add_excluded_exception(asyncio.CancelledError)
        self.buffer: deque[OutgoingMessage] = deque()
        self.transitions = 0
        self.opened_total = 0
        self.last_transition: datetime | None = None
        self._opened_at = 0.0  # monotonic time of the latest trip
        self._overflowing = False
        self._buffer_changed = asyncio.Event()
        self._settled = asyncio.Event()  # a message left flight or the buffer
        self._tasks: set[asyncio.Task[None]] = set()
        self._order = itertools.count()
        self._sending_head = 0  # the drain task is delivering buffer[:_sending_head]
        metrics.BREAKER_STATE.labels(self.name).set(BREAKER_STATE_VALUES["closed"])
        metrics.BUFFERED.set(0)

    # --- state ------------------------------------------------------------------------------

    @property
    def breaker_state(self) -> BreakerState:
        state = self.breaker.current_state
        assert state in ("closed", "open", "half-open")
        return state  # type: ignore[return-value]

    def breaker_status(self) -> BreakerStatus:
        return BreakerStatus(
            state=self.breaker_state,
            fail_counter=self.breaker.fail_counter,
            last_transition_time=rfc3339(self.last_transition) if self.last_transition else None,
            transitions=self.transitions,
            opened_total=self.opened_total,
        )

    @property
    def idle(self) -> bool:
        return self.stats.in_flight == 0 and not self.buffer

    def _must_buffer(self) -> bool:
        return bool(self.buffer) or self.breaker_state != "closed"

    # --- breaker callbacks (run in the event loop: every call happens there) ---------------

    def _on_transition(self, old: str, new: str, fail_counter: int) -> None:
        if new == "open":
            self._opened_at = time.monotonic()
        if old == new:
            # A call that started before the trip failed late and re-opened the breaker:
            # the open period restarts, but it is not a new transition.
            return
        self.transitions += 1
        self.opened_total += new == "open"
        self.last_transition = datetime.now(UTC)
        metrics.BREAKER_STATE.labels(self.name).set(BREAKER_STATE_VALUES[new])
        metrics.BREAKER_TRANSITIONS.labels(self.name, old, new).inc()
        level = log.warning if new == "open" else log.info
        level(
            "circuit breaker state changed",
            circuit_breaker=self.name,
            old_state=old,
            new_state=new,
            fail_counter=fail_counter,
            buffered=len(self.buffer),
        )
        self._buffer_changed.set()  # wake the drain task

    def _on_failure(self, exc: BaseException) -> None:
        metrics.BREAKER_FAILURES.labels(self.name).inc()

    # --- sending ----------------------------------------------------------------------------

    async def _attempt(self, message: OutgoingMessage) -> Ack:
        with self.breaker.calling():
            started = time.perf_counter()
            try:
                return await self.transport.send(message)
            except TransientError as exc:
                self.stats.count("failed_attempts")
                log.debug("publish attempt failed", reason=exc.reason)
                raise
            finally:
                metrics.PUBLISH_DURATION.labels(self.name).observe(time.perf_counter() - started)

    def _before_retry(self, state: RetryCallState) -> None:
        self.stats.count("retries")
        metrics.RETRIES.labels(self.name).inc()
        exc = state.outcome.exception() if state.outcome else None
        log.debug(
            "retrying after backoff",
            attempt=state.attempt_number,
            wait_s=round(state.upcoming_sleep, 3),
            reason=str(exc),
        )

    async def _deliver(self, message: OutgoingMessage) -> Ack:
        """Retries transient failures; raises what remains once retries or the breaker say
        stop (``TransientError``, ``CircuitBreakerError``) or ``PermanentError``."""
        p = self.policy
        retrying = transient_retry(
            p.retry_max_attempts, p.retry_base, p.retry_max, before_sleep=self._before_retry
        )
        async for attempt in retrying:
            with attempt:
                return await self._attempt(message)
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def _send_copy(self, message: OutgoingMessage) -> None:
        """The duplicate fault: the same message id once more, a single attempt."""
        if self.breaker_state != "closed":
            return  # never spend a half-open probe on an extra copy
        self.stats.count("duplicated")
        try:
            await self._attempt(message)
        except (*NOT_DELIVERED, PermanentError) as exc:
            log.debug("duplicate copy not acknowledged", reason=str(exc))
            return
        self.stats.count("duplicates_acknowledged")
        log.debug("duplicate copy acknowledged")

    # --- settling -------------------------------------------------------------------------

    def _acknowledge(self, message: OutgoingMessage, ack: Ack) -> None:
        self.stats.count("acknowledged")
        self.ledger.record(message)
        log.debug("message acknowledged", ack=ack.value)
        self._end_span(message, "acknowledged")

    def _reject(self, message: OutgoingMessage, exc: PermanentError) -> None:
        self.stats.count("rejected")
        self.ledger.record(message, "rejected")
        log.debug("message rejected", reason=exc.reason, status=exc.status)
        self._end_span(message, "rejected", error=exc.reason)

    def _enqueue(self, message: OutgoingMessage) -> None:
        if len(self.buffer) >= self.policy.buffer_size:
            self.stats.count("buffer_overflow")
            if not self._overflowing:
                log.warning("buffer full, dropping new messages", buffer_size=len(self.buffer))
            self._overflowing = True
            self._end_span(message, "buffer_overflow", error="buffer full")
            return
        self._overflowing = False
        # Concurrent sends fail in any order; insert by generation order so the buffer
        # drains oldest first. Never in front of the head the drain task is sending.
        lo = self._sending_head
        index = bisect.bisect_right(self.buffer, message.order, lo=lo, key=_order_of)
        self.buffer.insert(index, message)
        metrics.MESSAGES.labels("buffered").inc()
        metrics.BUFFERED.set(len(self.buffer))
        self._buffer_changed.set()
        log.debug("message buffered", buffered=len(self.buffer))

    @staticmethod
    def _end_span(message: OutgoingMessage, outcome: str, error: str | None = None) -> None:
        if message.span is None:
            return
        message.span.set_attribute("simulator.outcome", outcome)
        if error:
            message.span.set_status(Status(StatusCode.ERROR, error))
        message.span.end()

    # --- live path ------------------------------------------------------------------------

    def submit(self, message: OutgoingMessage, jitter: float = 0.0) -> None:
        """Hand over a generated message; it is in flight from this very moment."""
        self.stats.in_flight += 1
        message.order = next(self._order)
        task = asyncio.create_task(self._send_live(message, jitter))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_live(self, message: OutgoingMessage, jitter: float) -> None:
        settled = False
        bind_message(message)  # submit() gave this send a task of its own
        try:
            if jitter > 0:
                await asyncio.sleep(jitter)
            if self._must_buffer():
                settled = True
                self._enqueue(message)
                return
            try:
                ack = await self._deliver(message)
            except PermanentError as exc:
                settled = True
                self._reject(message, exc)
                return
            except NOT_DELIVERED as exc:
                settled = True
                log.debug("not delivered, buffering", reason=str(exc))
                self._enqueue(message)
                return
            settled = True
            self._acknowledge(message, ack)
            if message.duplicate:
                await self._send_copy(message)
        except asyncio.CancelledError:
            if not settled:
                self._enqueue(message)  # shutdown deadline: keep it accounted for
            raise
        except Exception:
            log.exception("unexpected error delivering a message")
            if not settled:
                self._enqueue(message)
        finally:
            self.stats.in_flight -= 1
            self._settled.set()

    # --- buffer drain -----------------------------------------------------------------------

    def _open_remaining(self) -> float:
        if self.breaker_state != "open":
            return 0.0
        remaining = self._opened_at + self.policy.breaker_reset_timeout - time.monotonic()
        return max(0.0, remaining + _CLOCK_SLACK)

    async def run_drain(self) -> None:
        """Forever: send the buffer's head once the breaker lets calls through."""
        while True:
            if not self.buffer:
                self._buffer_changed.clear()
                await self._buffer_changed.wait()
                continue
            wait = self._open_remaining()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            await self._drain_head()

    async def _drain_head(self) -> None:
        """Send the oldest buffered messages: one as the half-open probe, then up to
        ``drain_batch`` at once while the breaker is closed (a batching transport turns them
        into a few requests). Outcomes are applied together, in buffer order."""
        size = self.policy.drain_batch if self.breaker_state == "closed" else 1
        chunk = list(itertools.islice(self.buffer, size))
        self._sending_head = len(chunk)
        sends = asyncio.gather(*(self._drain_one(m) for m in chunk))
        try:
            # A batching transport would otherwise hold the chunk for its linger time; once
            # every send has reached it (one loop turn), the chunk goes out as it is.
            await asyncio.sleep(0)
            if flush := getattr(self.transport, "flush", None):
                flush()
            outcomes = await sends
        except asyncio.CancelledError:
            sends.cancel()  # no send outlives the drain (shutdown): the chunk stays buffered
            raise
        finally:
            self._sending_head = 0
        # Nothing is inserted in front of the chunk while it is out, so it is still the head.
        for message in chunk:
            head = self.buffer.popleft()
            assert head is message, "only the drain task removes messages from the buffer"
        self.buffer.extendleft(reversed([m for m, o in zip(chunk, outcomes, strict=True)
                                         if isinstance(o, _Kept)]))  # fmt: skip
        metrics.BUFFERED.set(len(self.buffer))
        pause = False
        for message, outcome in zip(chunk, outcomes, strict=True):
            with message_context(message):
                if isinstance(outcome, Ack):
                    self._acknowledge(message, outcome)
                elif isinstance(outcome, PermanentError):
                    self._reject(message, outcome)
                else:
                    pause = pause or outcome.pause
        self._settled.set()
        if not self.buffer:
            log.info("buffer drained", circuit_breaker=self.name)
        if pause:
            await asyncio.sleep(max(self.policy.retry_base, 0.05))
        for message, outcome in zip(chunk, outcomes, strict=True):
            if isinstance(outcome, Ack) and message.duplicate:
                with message_context(message):
                    await self._send_copy(message)

    async def _drain_one(self, message: OutgoingMessage) -> Ack | PermanentError | _Kept:
        bind_message(message)  # gather() runs each send as a task of its own
        try:
            return await self._deliver(message)
        except PermanentError as exc:
            return exc
        except NOT_DELIVERED as exc:
            log.debug("buffered message not delivered", reason=str(exc))
            # Retries exhausted without tripping the breaker: pause like a retry would.
            # (Open: run_drain waits out the reset timeout instead.)
            return _Kept(pause=self.breaker_state == "closed")
        except Exception:
            log.exception("unexpected error draining the buffer")
            return _Kept(pause=True)

    # --- shutdown ---------------------------------------------------------------------------

    async def wait_idle(self) -> None:
        """Until nothing is in flight or buffered (callers bound it with a timeout)."""
        while not self.idle:
            self._settled.clear()
            await self._settled.wait()

    async def cancel_in_flight(self) -> None:
        """Stop live sends; their messages return to the buffer and stay counted there."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def abandon_buffer(self) -> None:
        """At exit: end the traces of messages that never left (they stay counted)."""
        for message in self.buffer:
            self._end_span(message, "unflushed", error="not delivered before shutdown")
