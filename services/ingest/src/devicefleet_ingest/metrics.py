"""Prometheus metrics of the ingest API, registered on one registry per app (tests use their own).

``ingest_messages_received_total`` always equals the sum of ``ingest_messages_total`` over its
outcomes: every message received gets exactly one outcome.
"""

from __future__ import annotations

from enum import StrEnum

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

# Requests that carry messages: their refusals (400, 413) count as rejected messages.
INGEST_PATHS = frozenset({"/ingest", "/ingest/batch"})


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    UNAUTHORIZED = "unauthorized"  # no valid bearer token (401), messages never read
    OVERLOADED = "overloaded"
    FAILED = "failed"


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.http_requests = Counter(
            "http_requests_total",
            "HTTP requests by method, route template and status code",
            ["method", "route", "status"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request duration by method and route template",
            ["method", "route"],
            registry=registry,
        )
        self.received = Counter(
            "ingest_messages_received",
            "Messages received (a request whose body cannot be parsed counts as one)",
            registry=registry,
        )
        self.messages = Counter(
            "ingest_messages", "Messages by outcome", ["outcome"], registry=registry
        )
        for outcome in Outcome:
            self.messages.labels(outcome.value)
        self.produce_duration = Histogram(
            "kafka_produce_duration_seconds",
            "Time from produce to the broker's acknowledgement",
            registry=registry,
        )
        self.in_flight = Gauge(
            "ingest_in_flight_messages",
            "Messages produced to Kafka and not yet acknowledged",
            registry=registry,
        )

    def count(self, outcome: Outcome, n: int = 1) -> None:
        if n:
            self.messages.labels(outcome.value).inc(n)

    def reject(self) -> None:
        """A request refused before its messages could be read (400, 413)."""
        self.received.inc()
        self.count(Outcome.REJECTED)
