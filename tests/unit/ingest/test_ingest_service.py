"""Admission and delivery semantics of the Ingestor, driven directly on the event loop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from devicefleet_common.schemas import TelemetryIn
from devicefleet_ingest.idempotency import Claim, IdempotencyCache
from devicefleet_ingest.metrics import IngestMetrics
from devicefleet_ingest.service import Ingestor, Unavailable
from devicefleet_ingest.settings import IngestSettings

from .fakes import FakeProducer, reading


def make(producer: FakeProducer, **settings: Any) -> Ingestor:
    return Ingestor(producer, IngestSettings(**settings), IngestMetrics(CollectorRegistry()))


def msg(sequence: int) -> TelemetryIn:
    return TelemetryIn.model_validate(reading(sequence))


async def test_copy_of_an_in_flight_id_waits_for_the_original_then_is_duplicate() -> None:
    producer = FakeProducer(gate=asyncio.Event())
    ingestor = make(producer)
    first = asyncio.create_task(ingestor.ingest(msg(1)))
    await asyncio.sleep(0.01)

    copy = asyncio.create_task(ingestor.ingest(msg(1)))  # original still being delivered
    await asyncio.sleep(0.01)
    assert not copy.done()  # no "duplicate" before Kafka acknowledged the original
    assert ingestor.in_flight == 1
    producer.gate.set()  # type: ignore[union-attr]
    assert await first == "accepted"
    assert await copy == "duplicate"
    assert await ingestor.ingest(msg(1)) == "duplicate"
    assert ingestor.in_flight == 0
    assert len(producer.records) == 1


async def test_copy_of_an_in_flight_id_is_unavailable_when_the_original_fails() -> None:
    """The chaos suite's Kafka restart found it: a copy answered 409 while the original was
    in flight was counted delivered by the device, and lost when the original failed."""
    producer = FakeProducer(gate=asyncio.Event(), fail_ids={msg(1).message_id})
    ingestor = make(producer)
    first = asyncio.create_task(ingestor.ingest(msg(1)))
    await asyncio.sleep(0.01)
    copy = asyncio.create_task(ingestor.ingest(msg(1)))
    await asyncio.sleep(0.01)
    producer.gate.set()  # type: ignore[union-attr]

    for request in (first, copy):
        with pytest.raises(Unavailable):
            await request
    producer.fail_ids.clear()
    assert await ingestor.ingest(msg(1)) == "accepted"  # the device's retry gets through


async def test_copy_of_a_still_pending_id_is_unavailable_at_the_timeout() -> None:
    producer = FakeProducer(gate=asyncio.Event())
    ingestor = make(producer, produce_timeout_seconds=0.05)
    first = asyncio.create_task(ingestor.ingest(msg(1)))
    await asyncio.sleep(0.01)
    with pytest.raises(Unavailable, match="still under way"):
        await ingestor.ingest(msg(1))
    with pytest.raises(Unavailable, match="produce timed out"):
        await first
    producer.gate.set()  # type: ignore[union-attr]


async def test_too_many_in_flight_is_unavailable() -> None:
    producer = FakeProducer(gate=asyncio.Event())
    ingestor = make(producer, max_in_flight=1)
    first = asyncio.create_task(ingestor.ingest(msg(1)))
    await asyncio.sleep(0.01)

    with pytest.raises(Unavailable, match="too many messages in flight"):
        await ingestor.ingest(msg(2))
    producer.gate.set()  # type: ignore[union-attr]
    await first
    assert await ingestor.ingest(msg(2)) == "accepted"  # the refused id was not remembered


async def test_timeout_frees_the_id_but_keeps_the_slot_until_kafka_answers() -> None:
    producer = FakeProducer(delay=0.2)
    ingestor = make(producer, produce_timeout_seconds=0.02)

    with pytest.raises(Unavailable, match="produce timed out"):
        await ingestor.ingest(msg(1))
    assert ingestor.in_flight == 1  # librdkafka still holds the record: real backpressure
    await asyncio.sleep(0.3)
    assert ingestor.in_flight == 0
    # The late write landed, so the id is now known.
    assert await ingestor.ingest(msg(1)) == "duplicate"


async def test_batch_partial_failure_then_retry_reports_acked_as_duplicate() -> None:
    producer = FakeProducer(fail_ids={"sensor-1:1700000000:2"})
    ingestor = make(producer)
    batch = [msg(1), msg(2), msg(3)]

    with pytest.raises(Unavailable, match="kafka"):
        await ingestor.ingest_batch(batch)
    producer.fail_ids = set()
    results = await ingestor.ingest_batch(batch)

    assert [r.status for r in results] == ["duplicate", "accepted", "duplicate"]
    assert len(producer.records) == 3


async def test_same_id_twice_in_one_batch_is_produced_once() -> None:
    producer = FakeProducer()
    results = await make(producer).ingest_batch([msg(1), msg(1)])

    assert [r.status for r in results] == ["accepted", "duplicate"]
    assert len(producer.records) == 1


def test_cache_forgets_after_ttl() -> None:
    now = [0.0]
    cache = IdempotencyCache(ttl_seconds=10, maxsize=100, timer=lambda: now[0])
    assert cache.claim("a") is Claim.CLAIMED
    assert cache.claim("a") is Claim.IN_FLIGHT
    cache.mark_seen("a")
    assert cache.claim("a") is Claim.SEEN
    now[0] = 11.0
    assert cache.claim("a") is Claim.CLAIMED
