"""Admission (overload, duplicates, in-flight limit) and delivery to Kafka, without HTTP."""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import structlog
from confluent_kafka import KafkaError, KafkaException

from devicefleet_common.logging import get_logger
from devicefleet_common.schemas import MESSAGE_ID_HEADER, RawEnvelope, TelemetryIn
from devicefleet_common.tracing import inject_kafka_headers
from devicefleet_ingest.envelope import http_envelope
from devicefleet_ingest.idempotency import Claim, IdempotencyCache
from devicefleet_ingest.metrics import IngestMetrics, Outcome
from devicefleet_ingest.producer import Headers, RecordProducer
from devicefleet_ingest.settings import IngestSettings

log = get_logger("devicefleet.ingest")

ItemStatus = Literal["accepted", "duplicate"]


class TooLarge(Exception):
    """Answered with 413: a message Kafka refuses as too large; retrying cannot help."""

    def __init__(self, reason: str, message_ids: Sequence[str]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message_ids = list(message_ids)


# librdkafka refuses such a record at produce time: a property of the message, not an outage.
TOO_LARGE_FOR_KAFKA = "message exceeds Kafka's record size limit"


def claim_key(fleet: str | None, message_id: str) -> str:
    """The idempotency cache's key: with auth on, message ids are remembered per sender's
    fleet, so a fleet sending another fleet's message ids first (the processor dead-letters
    them, fleet_mismatch) cannot make that fleet's own messages look like duplicates."""
    return message_id if fleet is None else f"{fleet}\x00{message_id}"


class Unavailable(Exception):
    """Answered with 503 + Retry-After: the device should retry the same message later."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ItemResult:
    message_id: str
    status: ItemStatus


class Ingestor:
    def __init__(
        self,
        producer: RecordProducer,
        settings: IngestSettings,
        metrics: IngestMetrics,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._producer = producer
        self._settings = settings
        self._metrics = metrics
        self._rng = rng
        self._cache = IdempotencyCache(
            settings.idempotency_ttl_seconds, settings.idempotency_cache_size
        )
        # Slots are reserved at admission (synchronously) and freed when Kafka answers, even
        # if the HTTP request gave up earlier: that is the real backpressure.
        self._in_flight = 0
        # The produce under way per message id, so a copy can wait for its outcome.
        self._deliveries: dict[str, asyncio.Future[None]] = {}

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def ingest(self, message: TelemetryIn, fleet: str | None = None) -> ItemStatus:
        """``accepted`` once Kafka acknowledged, ``duplicate`` if seen or in flight; ``fleet``:
        whose bearer token the message came with (``None``: auth off)."""
        [result] = await self.ingest_batch([message], fleet)
        return result.status

    async def ingest_batch(
        self, messages: Sequence[TelemetryIn], fleet: str | None = None
    ) -> list[ItemResult]:
        """All-or-nothing admission, then every new message produced and awaited.

        Raises ``Unavailable`` if any produce failed; the ones acknowledged are remembered, so
        the device's retry of the whole batch reports them as duplicates.
        """
        self._metrics.received.inc(len(messages))
        if self._rng() < self._settings.overload_rate:
            self._overloaded(messages, "overloaded (injected fault)")

        claims = [self._cache.claim(claim_key(fleet, m.message_id)) for m in messages]
        new = [m for m, c in zip(messages, claims, strict=True) if c is Claim.CLAIMED]
        if self._in_flight + len(new) > self._settings.max_in_flight:
            for m in new:
                self._cache.release(claim_key(fleet, m.message_id))
            self._overloaded(messages, "too many messages in flight")

        # A copy of a message another request is still delivering gets its answer from that
        # delivery: "duplicate" only once Kafka acknowledged it. Answering 409 while it was in
        # flight told the device "delivered" for a write that could still fail: a lost message.
        in_flight = [
            m.message_id for m, c in zip(messages, claims, strict=True) if c is Claim.IN_FLIGHT
        ]
        errors = await self._deliver(new, in_flight, fleet)
        results: list[ItemResult] = []
        accepted = 0
        for message, claim in zip(messages, claims, strict=True):
            error = errors.get(message.message_id)
            if claim is Claim.CLAIMED and error is None:
                # The common case stays cheap: no context binding, one counter update below;
                # the ids go in as fields, so a message is still traceable in DEBUG logs.
                accepted += 1
                results.append(ItemResult(message.message_id, "accepted"))
                log.debug(
                    "message accepted", device_id=message.device_id, message_id=message.message_id
                )
                continue
            with structlog.contextvars.bound_contextvars(
                device_id=message.device_id, message_id=message.message_id
            ):
                if error is None:
                    self._metrics.count(Outcome.DUPLICATE)
                    log.info("duplicate message", reason=claim.value)
                    results.append(ItemResult(message.message_id, "duplicate"))
                elif error == TOO_LARGE_FOR_KAFKA:
                    self._metrics.count(Outcome.REJECTED)
                    log.info("message rejected", reason=error)
                else:
                    self._metrics.count(Outcome.FAILED)
                    log.warning("message not delivered", reason=error)
        if accepted:
            self._metrics.count(Outcome.ACCEPTED, accepted)
        retriable = [e for e in errors.values() if e != TOO_LARGE_FOR_KAFKA]
        if retriable:
            raise Unavailable(f"kafka: {retriable[0]}")
        if errors:
            raise TooLarge(TOO_LARGE_FOR_KAFKA, list(errors))
        return results

    def _overloaded(self, messages: Sequence[TelemetryIn], reason: str) -> None:
        self._metrics.count(Outcome.OVERLOADED, len(messages))
        log.warning("request refused", reason=reason, messages=len(messages))
        raise Unavailable(reason)

    async def _deliver(
        self,
        messages: Sequence[TelemetryIn],
        in_flight: Sequence[str] = (),
        fleet: str | None = None,
    ) -> dict[str, str]:
        """Produce ``messages`` and wait, up to the produce timeout, for their acks and for
        the deliveries already under way of the ``in_flight`` ids; an error text per message
        id that did not make it (absent: acknowledged)."""
        if not messages and not in_flight:
            return {}
        received_at = time.time()
        self._in_flight += len(messages)
        self._metrics.in_flight.set(self._in_flight)
        own = {
            m.message_id: asyncio.ensure_future(self._produce(http_envelope(m, received_at, fleet)))
            for m in messages
        }
        for message_id, task in own.items():
            key = claim_key(fleet, message_id)
            self._deliveries[key] = task
            task.add_done_callback(functools.partial(self._forget_delivery, key))
        others = {
            i: self._deliveries[claim_key(fleet, i)]
            for i in in_flight
            if claim_key(fleet, i) in self._deliveries
        }
        errors = {i: "delivery under way not found" for i in in_flight if i not in others}
        awaited = [*own.values(), *others.values()]
        _, pending = await asyncio.wait(awaited, timeout=self._settings.produce_timeout_seconds)
        for message_id, task in own.items():
            if task in pending:
                # The record may still land later (then it is marked seen); meanwhile the
                # device's retry must not be answered "duplicate" for a write that may fail.
                self._cache.release(claim_key(fleet, message_id))
                task.add_done_callback(functools.partial(_late_outcome, message_id))
                errors[message_id] = "produce timed out"
            elif (exc := task.exception()) is not None:
                errors[message_id] = _produce_error(exc)
        for message_id, earlier in others.items():
            if earlier in pending:
                errors[message_id] = "earlier delivery of this message still under way"
            elif (exc := earlier.exception()) is not None:
                errors[message_id] = f"earlier delivery failed: {exc}"
        return errors

    def _forget_delivery(self, key: str, task: asyncio.Future[None]) -> None:
        if self._deliveries.get(key) is task:
            del self._deliveries[key]

    async def _produce(self, envelope: RawEnvelope) -> None:
        """Owns one in-flight slot and the message's claim until Kafka answers."""
        headers: Headers = [
            *inject_kafka_headers(),
            (MESSAGE_ID_HEADER, envelope.message_id.encode()),
        ]
        key = claim_key(envelope.fleet, envelope.message_id)
        started = time.perf_counter()
        try:
            await self._producer.produce(
                self._settings.raw_topic,
                key=envelope.device_id.encode(),
                value=envelope.model_dump_json().encode(),
                headers=headers,
            )
        except BaseException:
            self._cache.release(key)
            raise
        else:
            self._metrics.produce_duration.observe(time.perf_counter() - started)
            self._cache.mark_seen(key)
        finally:
            self._in_flight -= 1
            self._metrics.in_flight.set(self._in_flight)


def _produce_error(exc: BaseException) -> str:
    if isinstance(exc, BufferError):
        return "local queue full"
    if isinstance(exc, KafkaException) and exc.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE:
        return TOO_LARGE_FOR_KAFKA
    return str(exc) or repr(exc)


def _late_outcome(message_id: str, task: asyncio.Future[None]) -> None:
    """A produce that outlived its request (answered 503, so the device retries): logged, so
    a late failure is never silent."""
    exc = None if task.cancelled() else task.exception()
    if exc is None:
        log.info("timed-out produce acknowledged late", message_id=message_id)
    else:
        log.warning("timed-out produce failed", message_id=message_id, reason=str(exc) or repr(exc))
