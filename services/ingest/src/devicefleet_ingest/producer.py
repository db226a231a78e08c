"""What the ingest service needs from Kafka; ``AsyncProducer`` fits, tests pass a fake."""

from __future__ import annotations

from typing import Protocol

from devicefleet_common.kafka import (
    AsyncProducer,
    KafkaHeaderList,
    on_error_logger,
    producer_config,
)
from devicefleet_ingest.settings import IngestSettings

Headers = KafkaHeaderList


class RecordProducer(Protocol):
    async def produce(
        self, topic: str, key: bytes, value: bytes, headers: Headers | None = None
    ) -> object:
        """Resolve when the broker acknowledged the record; raise if it was not."""
        ...

    def cluster_reachable(self, timeout: float = 2.0) -> bool: ...

    def close(self, timeout: float = 10.0) -> int: ...


def kafka_producer(settings: IngestSettings) -> AsyncProducer:
    timeout_ms = int(settings.produce_timeout_seconds * 1000)
    return AsyncProducer(
        producer_config(
            settings.kafka_bootstrap_servers,
            "devicefleet-ingest",
            # librdkafka gives up when the HTTP caller does, so a 503 rarely hides a late write.
            **settings.kafka_security_config(),
            **{"message.timeout.ms": timeout_ms, "error_cb": on_error_logger("ingest")},
        )
    )
