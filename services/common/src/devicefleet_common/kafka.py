"""confluent-kafka configuration and small adapters used by every Kafka-facing service."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from prometheus_client import Counter, Gauge

from devicefleet_common.logging import get_logger
from devicefleet_common.schemas import DLQ_DETAIL_HEADER, DLQ_REASON_HEADER, DLQ_STAGE_HEADER
from devicefleet_common.tracing import KafkaHeaders

log = get_logger(__name__)

KafkaHeaderList = KafkaHeaders

CONSUMER_LAG = Gauge(
    "kafka_consumer_lag_messages",
    "Messages between the consumer group's position and the partition's high watermark",
    ["topic", "partition"],
)


def producer_config(bootstrap: str, client_id: str, **overrides: Any) -> dict[str, Any]:
    """Idempotent producer: acks=all and no reordering on retry, so the only duplicates a
    consumer can see come from our own re-processing after a crash (deduplicated in the DB)."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.timeout.ms": 30_000,
    }
    config.update(overrides)
    return config


def consumer_config(
    bootstrap: str, group_id: str, client_id: str, **overrides: Any
) -> dict[str, Any]:
    """Manual commits only after the work is durable; lag published through statistics."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "client.id": client_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": 15_000,
        "statistics.interval.ms": 5_000,
        "stats_cb": publish_consumer_lag,
    }
    config.update(overrides)
    return config


PRODUCER_RENEWALS = Counter(
    "kafka_producer_renewals",
    "Kafka producers replaced because deliveries kept timing out while the cluster answered",
)

# Partitions whose lag this process exports (one consumer per process).
_lag_series: set[tuple[str, str]] = set()


def publish_consumer_lag(stats_json: str) -> None:
    """librdkafka statistics callback: export per-partition consumer lag. Partitions no longer
    reported with a lag (revoked in a rebalance) lose their series, so a stale value cannot
    keep a lag alert firing for a partition another replica now consumes."""
    stats = orjson.loads(stats_json)
    current: set[tuple[str, str]] = set()
    for topic, tstats in stats.get("topics", {}).items():
        for partition, pstats in tstats.get("partitions", {}).items():
            lag = pstats.get("consumer_lag", -1)
            if partition != "-1" and lag >= 0:
                CONSUMER_LAG.labels(topic, partition).set(lag)
                current.add((topic, partition))
    for gone in _lag_series - current:
        CONSUMER_LAG.remove(*gone)
    _lag_series.clear()
    _lag_series.update(current)


def message_headers(msg: Message) -> KafkaHeaderList:
    raw = msg.headers() or []
    return list(raw.items()) if isinstance(raw, dict) else list(raw)


def header_value(headers: KafkaHeaderList, name: str) -> str | None:
    for key, value in headers:
        if key == name and value is not None:
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return None


class AsyncProducer:
    """Awaitable produce for asyncio code: the future resolves when the broker acknowledged.

    librdkafka callbacks fire from ``poll``; a daemon thread polls and hands results back to
    the event loop, so awaiting a delivery never blocks the loop. The acknowledgements of one
    ``poll`` go back together, in one wake-up of the loop rather than one per record.

    A producer that stops delivering while the cluster answers is replaced: after a broker
    restart, librdkafka's idempotent producer was once seen timing out every record for
    minutes while another client of the same broker delivered (confluentinc/librdkafka#4976
    describes a producer stuck like this). With a finite ``message.timeout.ms``: when nothing
    was delivered for ``stall_factor`` times that, at least ``STALL_TIMEOUTS`` records timed
    out meanwhile, and the cluster has answered metadata requests for a whole message timeout
    (so a record sent once it came back had its chance), a new producer (a new producer id)
    takes the next records; the old one is polled until its records are settled.
    """

    STALL_TIMEOUTS = 3
    CHECK_INTERVAL = 1.0

    def __init__(
        self,
        config: dict[str, Any],
        stall_factor: float = 3.0,
        factory: Callable[[dict[str, Any]], Producer] = Producer,
    ) -> None:
        self._config = config
        self._factory = factory
        self._producer = factory(config)
        self._retired: list[Producer] = []  # replaced, still settling; only the polling thread
        timeout_ms = int(config.get("message.timeout.ms", 300_000))
        self._timeout_seconds = timeout_ms / 1000 if timeout_ms > 0 else None  # 0: never
        self._stall_seconds = stall_factor * timeout_ms / 1000
        # Watchdog state, only on the polling thread (delivery callbacks run in its poll).
        self._last_delivery = time.monotonic()
        self._timed_out = 0  # records timed out since the last delivery
        self._answering_since: float | None = None  # cluster reachable while stalled, since
        self._stop = threading.Event()
        self._acked: list[_Delivery] = []  # this poll's deliveries; only the polling thread
        self._thread = threading.Thread(target=self._poll_loop, name="kafka-poll", daemon=True)
        self._thread.start()

    def _poll_loop(self) -> None:
        next_check = time.monotonic() + self.CHECK_INTERVAL
        while not self._stop.is_set():
            self._producer.poll(0.1)
            self._poll_retired()
            self._hand_over()
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + self.CHECK_INTERVAL
                if self._stalled():
                    self._renew()

    def _poll_retired(self) -> None:
        for old in list(self._retired):
            old.poll(0)
            if len(old) == 0:
                self._retired.remove(old)

    def _note(self, err: KafkaError | None) -> None:
        """Runs in ``poll``, on the polling thread."""
        if err is None:
            self._last_delivery = time.monotonic()
            self._timed_out = 0
            self._answering_since = None
        elif err.code() == KafkaError._MSG_TIMED_OUT:
            self._timed_out += 1

    def _stalled(self) -> bool:
        if self._timeout_seconds is None or self._timed_out < self.STALL_TIMEOUTS:
            return False
        now = time.monotonic()
        if now - self._last_delivery < self._stall_seconds:
            return False
        if not self.cluster_reachable():  # Kafka is down: a new producer would not help
            self._answering_since = None
            return False
        if self._answering_since is None:
            self._answering_since = now
        return now - self._answering_since >= self._timeout_seconds

    def _renew(self) -> None:
        stalled_for = time.monotonic() - self._last_delivery
        try:
            new = self._factory(self._config)
        except Exception:  # the polling thread must survive: keep the old producer
            log.exception("kafka producer could not be renewed")
            self._last_delivery = time.monotonic()  # try again after another stall window
            return
        old, self._producer = self._producer, new
        self._retired.append(old)
        PRODUCER_RENEWALS.inc()
        log.warning(
            "kafka producer renewed: records kept timing out while the cluster answered",
            seconds_without_delivery=round(stalled_for, 1),
            timed_out=self._timed_out,
            unsettled=len(old),
        )
        self._last_delivery = time.monotonic()  # the new producer gets a full window
        self._timed_out = 0
        self._answering_since = None

    def _hand_over(self) -> None:
        if not self._acked:
            return
        deliveries, self._acked = self._acked, []
        by_loop: dict[asyncio.AbstractEventLoop, list[_Delivery]] = {}
        for delivery in deliveries:
            by_loop.setdefault(delivery[0].get_loop(), []).append(delivery)
        for loop, settled in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle_all, settled)

    async def produce(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> Message:
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            self._note(err)
            self._acked.append((future, err, msg))

        # BufferError (local queue full) propagates: the caller turns it into 503.
        self._producer.produce(
            topic, value=value, key=key, headers=list(headers or []), on_delivery=on_delivery
        )
        return await future

    def queue_length(self) -> int:
        return len(self._producer) + sum(len(old) for old in list(self._retired))

    def cluster_reachable(self, timeout: float = 2.0) -> bool:
        try:
            self._producer.list_topics(timeout=timeout)
        except KafkaException:
            return False
        return True

    def close(self, timeout: float = 10.0) -> int:
        self._stop.set()
        self._thread.join(timeout=1.0)  # from here on, only flush() runs the callbacks
        remaining = int(self._producer.flush(timeout))
        for old in self._retired:
            remaining += int(old.flush(0))
        self._hand_over()
        return remaining


_Delivery = tuple["asyncio.Future[Message]", "KafkaError | None", Message]


def _settle_all(deliveries: list[_Delivery]) -> None:
    for future, err, msg in deliveries:
        if future.done():  # cancelled meanwhile
            continue
        if err is not None:
            future.set_exception(KafkaException(err))
        else:
            future.set_result(msg)


def on_error_logger(component: str) -> Callable[[KafkaError], None]:
    """``error_cb`` that logs broker-level errors with the component name."""

    def _log(err: KafkaError) -> None:
        log.warning("kafka client error", component=component, error=str(err), fatal=err.fatal())

    return _log


def next_offsets(messages: list[Message]) -> list[TopicPartition]:
    """Offsets to commit after ``messages`` are durable: one past the highest per partition."""
    highest: dict[tuple[str, int], int] = {}
    for msg in messages:
        key = (msg.topic() or "", msg.partition() or 0)
        highest[key] = max(highest.get(key, -1), msg.offset() or 0)
    return [TopicPartition(t, p, o + 1) for (t, p), o in highest.items()]


def first_offsets(messages: list[Message]) -> list[TopicPartition]:
    """Where to seek back to so that ``messages`` are consumed again."""
    lowest: dict[tuple[str, int], int] = {}
    for msg in messages:
        key = (msg.topic() or "", msg.partition() or 0)
        offset = msg.offset() or 0
        lowest[key] = min(lowest.get(key, offset), offset)
    return [TopicPartition(t, p, o) for (t, p), o in lowest.items()]


def dead_letter_headers(msg: Message, stage: str, reason: str, detail: str) -> KafkaHeaderList:
    """The original headers plus why and where the record was dead-lettered."""
    headers = message_headers(msg)
    headers += [
        (DLQ_REASON_HEADER, reason.encode()),
        (DLQ_STAGE_HEADER, stage.encode()),
        (DLQ_DETAIL_HEADER, detail[:1000].encode("utf-8", "replace")),
        ("dlq-original-topic", (msg.topic() or "").encode()),
        ("dlq-original-partition", str(msg.partition()).encode()),
        ("dlq-original-offset", str(msg.offset()).encode()),
    ]
    return headers


class DeliveryTracker:
    """Counts delivery failures of a synchronous producer between ``flush`` calls, so a
    consumer commits its offsets only when everything it produced was acknowledged."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def __call__(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self.failures.append(str(err))

    def flush(self, producer: Producer, timeout: float) -> None:
        remaining = producer.flush(timeout)
        failures, self.failures = self.failures, []
        if remaining or failures:
            raise KafkaException(
                KafkaError(
                    KafkaError._MSG_TIMED_OUT, f"{remaining} undelivered, failures: {failures[:3]}"
                )
            )


@dataclass
class StageClients:
    """Consumer and producer of a pipeline stage that commits its input offsets only after
    everything it produced for them was acknowledged."""

    consumer: Consumer
    producer: Producer
    delivery: DeliveryTracker

    @classmethod
    def connect(
        cls, bootstrap: str, group_id: str, name: str, security: Mapping[str, str] | None = None
    ) -> StageClients:
        """``security``: TLS settings (``KafkaSettings.kafka_security_config()``)."""
        security = security or {}
        consumer = Consumer(
            consumer_config(
                bootstrap,
                group_id,
                name,
                **security,
                error_cb=on_error_logger(f"{name}-consumer"),
            )
        )
        # message.timeout.ms=0: retry delivery until it succeeds, never drop a record.
        producer = Producer(
            producer_config(
                bootstrap,
                name,
                **security,
                **{"message.timeout.ms": 0, "error_cb": on_error_logger(f"{name}-producer")},
            )
        )
        return cls(consumer, producer, DeliveryTracker())

    def produce(
        self, topic: str, key: bytes | None, value: bytes | None, headers: KafkaHeaderList
    ) -> None:
        self.producer.produce(
            topic, value=value, key=key, headers=headers, on_delivery=self.delivery
        )

    def commit_after_delivery(self, messages: list[Message], timeout: float = 30.0) -> None:
        self.delivery.flush(self.producer, timeout)
        self.consumer.commit(offsets=next_offsets(messages), asynchronous=False)

    def close(self) -> None:
        self.consumer.close()
        self.producer.flush(10)
