"""AsyncProducer replaces a producer that keeps timing out records while the cluster answers,
and leaves it alone while the cluster is down or records may wait forever. librdkafka is
replaced by a scripted fake: a wedged client cannot be produced on demand."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from prometheus_client import REGISTRY

from devicefleet_common.kafka import AsyncProducer


class ScriptedProducer:
    """Settles each record on the next poll: acknowledged, or timed out when ``wedged``."""

    def __init__(self, wedged: bool, reachable: bool) -> None:
        self.wedged = wedged
        self.reachable = reachable
        self.pending: list[Any] = []
        self.produced = 0

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.produced += 1
        self.pending.append(kwargs["on_delivery"])

    def poll(self, timeout: float) -> int:
        time.sleep(min(timeout, 0.005))
        pending, self.pending = self.pending, []
        for on_delivery in pending:
            on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT) if self.wedged else None, None)
        return len(pending)

    def __len__(self) -> int:
        return len(self.pending)

    def list_topics(self, timeout: float) -> object:
        if not self.reachable:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))
        return object()

    def flush(self, timeout: float) -> int:
        self.poll(0)
        return 0


def renewals() -> float:
    return REGISTRY.get_sample_value("kafka_producer_renewals_total") or 0.0


def run(
    producers: list[ScriptedProducer], timeout_ms: int, records: int, wait: float
) -> tuple[AsyncProducer, list[BaseException | None]]:
    """Produce ``records`` one by one, wait, produce one more; every record's outcome."""
    made = iter(producers)
    producer = AsyncProducer({"message.timeout.ms": timeout_ms}, factory=lambda _c: next(made))

    async def scenario() -> list[BaseException | None]:
        outcomes: list[BaseException | None] = []
        for _ in range(records):
            try:
                await producer.produce("raw", b"k", b"v")
                outcomes.append(None)
            except KafkaException as exc:
                outcomes.append(exc)
        await asyncio.sleep(wait)
        try:
            await asyncio.wait_for(producer.produce("raw", b"k", b"v"), 2)
            outcomes.append(None)
        except KafkaException as exc:
            outcomes.append(exc)
        return outcomes

    try:
        return producer, asyncio.run(scenario())
    finally:
        producer.close(1)


@pytest.fixture(autouse=True)
def quick_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AsyncProducer, "CHECK_INTERVAL", 0.02)


def test_a_wedged_producer_is_replaced_once_the_cluster_answers() -> None:
    wedged = ScriptedProducer(wedged=True, reachable=True)
    healthy = ScriptedProducer(wedged=False, reachable=True)
    before = renewals()
    # 100 ms message timeout: stalled after 300 ms, and the cluster answered for 100 ms more.
    _, outcomes = run([wedged, healthy], timeout_ms=100, records=3, wait=0.8)
    assert all(isinstance(o, KafkaException) for o in outcomes[:3]), outcomes
    assert outcomes[3] is None, "the record after the renewal was delivered"
    assert (wedged.produced, healthy.produced) == (3, 1)
    assert renewals() == before + 1


def test_no_renewal_while_the_cluster_is_down() -> None:
    down = ScriptedProducer(wedged=True, reachable=False)
    spare = ScriptedProducer(wedged=False, reachable=True)
    before = renewals()
    _, outcomes = run([down, spare], timeout_ms=100, records=3, wait=0.8)
    assert all(isinstance(o, KafkaException) for o in outcomes), outcomes
    assert (down.produced, spare.produced) == (4, 0)
    assert renewals() == before


def test_no_renewal_without_a_message_timeout_or_before_enough_timeouts() -> None:
    for timeout_ms, records in ((0, 3), (100, 2)):
        wedged = ScriptedProducer(wedged=True, reachable=True)
        spare = ScriptedProducer(wedged=False, reachable=True)
        before = renewals()
        run([wedged, spare], timeout_ms=timeout_ms, records=records, wait=0.8)
        assert spare.produced == 0, (timeout_ms, records)
        assert renewals() == before


def test_a_producer_that_cannot_be_made_leaves_the_old_one_polling() -> None:
    wedged = ScriptedProducer(wedged=True, reachable=True)
    made = iter([wedged])

    def factory(_config: dict[str, Any]) -> Any:
        try:
            return next(made)
        except StopIteration:
            raise KafkaException(KafkaError(KafkaError._INVALID_ARG)) from None

    producer = AsyncProducer({"message.timeout.ms": 100}, factory=factory)

    async def scenario() -> None:
        for _ in range(3):
            with pytest.raises(KafkaException):
                await producer.produce("raw", b"k", b"v")
        await asyncio.sleep(0.8)  # renewals attempted, and failed
        with pytest.raises(KafkaException):  # still answered, by the old producer
            await asyncio.wait_for(producer.produce("raw", b"k", b"v"), 2)

    try:
        asyncio.run(scenario())
        assert wedged.produced == 4
    finally:
        producer.close(1)
