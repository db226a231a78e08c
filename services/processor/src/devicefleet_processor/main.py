"""Processor: raw_iot_data → decode + enrich → decoded_iot_data (or the dead-letter topic).

At-least-once with no loss: offsets are committed only after every record produced for the
batch was acknowledged. A crash re-processes at most one batch; the sink's unique key drops
the resulting duplicates.
"""

from __future__ import annotations

import sys
import time

from confluent_kafka import KafkaException, Message
from opentelemetry import trace
from prometheus_client import Counter, Histogram

from devicefleet_common.kafka import (
    StageClients,
    first_offsets,
    message_headers,
)
from devicefleet_common.lifecycle import run_until_signalled, start_observability
from devicefleet_common.logging import get_logger
from devicefleet_common.tracing import extract_pairs, inject_kafka_headers
from devicefleet_processor.health import HealthScorer
from devicefleet_processor.health_model import HealthModel
from devicefleet_processor.pipeline import process
from devicefleet_processor.registry import DeviceRegistry, RegistryUnavailable
from devicefleet_processor.settings import Settings

log = get_logger("devicefleet.processor")
tracer = trace.get_tracer("devicefleet.processor")

MESSAGES = Counter("processor_messages_total", "Raw records processed", ["outcome"])
DEAD_LETTERS = Counter("processor_dead_letters_total", "Records dead-lettered", ["reason"])
DECODE_DURATION = Histogram(
    "processor_decode_duration_seconds",
    "Decode + enrich time per record",
    buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1),
)
BATCH_DURATION = Histogram("processor_batch_duration_seconds", "Consume-to-commit time per batch")
REGISTRY_ERRORS = Counter("processor_registry_unavailable_total", "Batches retried: registry down")


class Processor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.kafka = StageClients.connect(
            settings.kafka_bootstrap_servers,
            settings.group_id,
            "devicefleet-processor",
            settings.kafka_security_config(),
        )
        self.registry = DeviceRegistry(
            settings.database_url,
            settings.registry_refresh_seconds,
            settings.registry_miss_ttl_seconds,
        )
        self.scorer = (
            HealthScorer(
                HealthModel.load(settings.health_model_path), settings.health_stale_after_seconds
            )
            if settings.health_enabled
            else None
        )
        if self.scorer is not None:
            log.info("health model loaded", model_version=self.scorer.model.version)
        self.running = True

    def run(self) -> None:
        self.kafka.consumer.subscribe([self.settings.raw_topic])
        backoff = 0.5
        while self.running:
            msgs = [
                m
                for m in self.kafka.consumer.consume(
                    self.settings.batch_size, self.settings.poll_timeout
                )
                if not self._is_error(m)
            ]
            if self.scorer is not None:
                self.scorer.refresh_gauges()  # also while idle: stale devices must drop out
            if not msgs:
                continue
            try:
                self.handle_batch(msgs)
                backoff = 0.5
            except (RegistryUnavailable, KafkaException) as exc:
                # Nothing of this batch is committed; consume it again after a pause.
                REGISTRY_ERRORS.inc()
                log.warning(
                    "batch failed, will retry", error=str(exc), messages=len(msgs), retry_in=backoff
                )
                for tp in first_offsets(msgs):
                    self.kafka.consumer.seek(tp)
                time.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    def _is_error(self, msg: Message) -> bool:
        if msg.error() is None:
            return False
        log.warning("consumer error", error=str(msg.error()))
        return True

    def handle_batch(self, msgs: list[Message]) -> None:
        started = time.perf_counter()
        self.registry.refresh_if_stale()
        s = self.settings
        reasons: list[str] = []
        for msg in msgs:
            with tracer.start_as_current_span(
                "processor.decode",
                context=extract_pairs(message_headers(msg)),
                kind=trace.SpanKind.CONSUMER,
            ):
                t0 = time.perf_counter()
                out = process(
                    msg,
                    self.registry,
                    s.max_future_skew_seconds,
                    s.max_age_seconds,
                    scorer=self.scorer,
                )
                DECODE_DURATION.observe(time.perf_counter() - t0)
                headers = inject_kafka_headers(
                    [(k, v) for k, v in out.headers if k not in ("traceparent", "tracestate")]
                )
                topic = s.dead_letter_topic if out.dead_letter else s.decoded_topic
                self.kafka.produce(topic, out.key, out.value, headers)
                # The ids go in as fields: binding them to the context per message costs
                # more than the decode itself.
                ids = {"message_id": out.message_id, "device_id": out.device_id}
                if out.dead_letter:
                    reasons.append(out.reason or "unknown")
                    log.info("message dead-lettered", reason=out.reason, **ids)
                else:
                    log.debug("message decoded", **ids)
            self.kafka.producer.poll(0)
        self.kafka.commit_after_delivery(msgs)
        # Counted once committed, so that raw = decoded + dead_lettered holds across retries.
        MESSAGES.labels("decoded").inc(len(msgs) - len(reasons))
        MESSAGES.labels("dead_lettered").inc(len(reasons))
        for reason in reasons:
            DEAD_LETTERS.labels(reason).inc()
        BATCH_DURATION.observe(time.perf_counter() - started)

    def stop(self, *_: object) -> None:
        self.running = False

    def close(self) -> None:
        self.kafka.close()
        self.registry.close()


def main() -> int:
    settings = Settings()
    start_observability("processor", settings, settings.metrics_port)
    return run_until_signalled("processor", Processor(settings))


if __name__ == "__main__":
    sys.exit(main())
