"""Fakes for the ingest unit tests: no Kafka, no network."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from confluent_kafka import KafkaError, KafkaException
from prometheus_client import CollectorRegistry

if TYPE_CHECKING:
    from fastapi.testclient import TestClient


@dataclass
class Record:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, Any]]

    @property
    def envelope(self) -> dict[str, Any]:
        return dict(orjson.loads(self.value))

    def header(self, name: str) -> str | None:
        found = [v for k, v in self.headers if k == name]
        return found[0].decode() if found else None


@dataclass
class FakeProducer:
    """Acknowledges at once unless told to fail, block (``gate``) or raise BufferError."""

    records: list[Record] = field(default_factory=list)
    buffer_full: bool = False
    fail_ids: set[str] = field(default_factory=set)
    gate: asyncio.Event | None = None
    delay: float = 0.0
    reachable: bool = True
    closed: bool = False

    async def produce(
        self, topic: str, key: bytes, value: bytes, headers: list[Any] | None = None
    ) -> object:
        if self.buffer_full:
            raise BufferError("Local: Queue full")
        if self.gate is not None:
            await self.gate.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        if orjson.loads(value)["message_id"] in self.fail_ids:
            raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT))
        self.records.append(Record(topic, key, value, list(headers or [])))
        return None

    def cluster_reachable(self, timeout: float = 2.0) -> bool:
        return self.reachable

    def close(self, timeout: float = 10.0) -> int:
        self.closed = True
        return 0


def reading(sequence: int = 1, device_id: str = "sensor-1", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "device_id": device_id,
        "boot_epoch": 1_700_000_000,
        "sequence": sequence,
        "timestamp": "2026-01-01T00:00:00Z",
        "payload": {"temperature": 21.5},
    }
    body.update(overrides)
    return body


@dataclass
class Api:
    client: TestClient
    producer: FakeProducer
    registry: CollectorRegistry

    def sample(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0
