"""OpenTelemetry setup and W3C trace-context carriers for Kafka headers and MQTT v5 properties.

One message is one trace: the simulator starts it, and each hop (HTTP header, MQTT user
property, Kafka header) carries ``traceparent`` to the next service.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

# confluent-kafka's header list type; values may be None.
KafkaHeaders = list[tuple[str, str | bytes | None]]
MqttUserProperties = list[tuple[str, str]]


def setup_tracing(service: str, otlp_endpoint: str = "") -> TracerProvider:
    """Install a tracer provider; export over OTLP/HTTP only when an endpoint is configured.

    A service records spans only when it exports them. Without an endpoint every span is a
    non-recording one: it still carries the trace id (into the logs and, as ``traceparent``,
    to the next hop) but costs next to nothing; recording spans nobody exports was a quarter
    of ingest's CPU time (docs/benchmarks/notes.md). With an endpoint the service records
    every span whatever the upstream hop decided, so its part of a trace is never missing.
    """
    provider = TracerProvider(
        resource=Resource.create({"service.name": service}),
        sampler=ALWAYS_ON if otlp_endpoint else ALWAYS_OFF,
    )
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    trace.set_tracer_provider(provider)
    return provider


Pairs = Sequence[tuple[str, str | bytes | None]]


class _PairsGetter(Getter[Pairs]):
    def get(self, carrier: Pairs, key: str) -> list[str] | None:
        values = [
            v.decode("latin-1") if isinstance(v, bytes) else v
            for k, v in carrier
            if k.lower() == key and v is not None
        ]
        return values or None

    def keys(self, carrier: Pairs) -> list[str]:
        return [k for k, _ in carrier]


class _KafkaSetter(Setter[KafkaHeaders]):
    def set(self, carrier: KafkaHeaders, key: str, value: str) -> None:
        carrier.append((key, value.encode("latin-1")))


class _MqttSetter(Setter[MqttUserProperties]):
    def set(self, carrier: MqttUserProperties, key: str, value: str) -> None:
        carrier.append((key, value))


_getter = _PairsGetter()


def inject_kafka_headers(headers: KafkaHeaders | None = None) -> KafkaHeaders:
    carrier: KafkaHeaders = list(headers or [])
    propagate.inject(carrier, setter=_KafkaSetter())
    return carrier


def inject_mqtt_properties(props: MqttUserProperties | None = None) -> MqttUserProperties:
    carrier: MqttUserProperties = list(props or [])
    propagate.inject(carrier, setter=_MqttSetter())
    return carrier


def extract_pairs(pairs: Iterable[tuple[str, str | bytes | None]] | None) -> otel_context.Context:
    """Context from Kafka headers or MQTT user properties (both are lists of pairs)."""
    return propagate.extract(list(pairs or []), getter=_getter)


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
