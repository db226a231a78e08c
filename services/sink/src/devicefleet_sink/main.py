"""Sink: decoded_iot_data → PostgreSQL, in batches, exactly once in effect.

Offsets are committed only after the database transaction committed. A crash in between
replays the batch, and the unique key (message_id, metric, time) drops every replayed row,
so the tables are the same as if the crash had not happened.
"""

from __future__ import annotations

import sys
import time

import psycopg
import pydantic
from confluent_kafka import KafkaException, Message
from opentelemetry import trace
from prometheus_client import Counter, Histogram

from devicefleet_common.kafka import (
    StageClients,
    dead_letter_headers,
    message_headers,
)
from devicefleet_common.lifecycle import run_until_signalled, start_observability
from devicefleet_common.logging import get_logger
from devicefleet_common.schemas import DecodedRecord
from devicefleet_common.tracing import extract_pairs
from devicefleet_sink.rows import Row, prediction_row, record_rows
from devicefleet_sink.settings import Settings
from devicefleet_sink.writer import MeasurementWriter

log = get_logger("devicefleet.sink")
tracer = trace.get_tracer("devicefleet.sink")

RECORDS = Counter("sink_records_total", "Decoded records consumed", ["outcome"])
ROWS = Counter("sink_rows_total", "Measurement rows written", ["outcome"])
PREDICTIONS_WRITTEN = Counter(
    "sink_predictions_total", "Health predictions stored (new ones, not replays)"
)
BATCH_SIZE = Histogram(
    "sink_batch_size_records",
    "Records per batch",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)
BATCH_DURATION = Histogram("sink_batch_duration_seconds", "Write + commit time per batch")
WRITE_FAILURES = Counter("sink_write_failures_total", "Batch writes that failed and were retried")
END_TO_END = Histogram(
    "sink_end_to_end_seconds",
    "From a reading's device time to the commit of its rows: how fresh the data a user "
    "queries is (device clock skew included)",
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)

STAGE = "sink"


class Sink:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.kafka = StageClients.connect(
            settings.kafka_bootstrap_servers,
            settings.group_id,
            "devicefleet-sink",
            settings.kafka_security_config(),
        )
        self.writer = MeasurementWriter(settings.database_url)
        self.running = True

    def collect(self) -> list[Message]:
        """Up to batch_size records, or fewer once batch_timeout has passed."""
        batch: list[Message] = []
        deadline = time.monotonic() + self.settings.batch_timeout
        while self.running and len(batch) < self.settings.batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for msg in self.kafka.consumer.consume(
                self.settings.batch_size - len(batch), remaining
            ):
                if msg.error() is not None:
                    log.warning("consumer error", error=str(msg.error()))
                else:
                    batch.append(msg)
        return batch

    def run(self) -> None:
        self.kafka.consumer.subscribe([self.settings.decoded_topic])
        while self.running:
            batch = self.collect()
            if batch:
                self.handle_batch(batch)

    def to_rows(self, batch: list[Message]) -> tuple[list[Row], list[Row], list[float], int]:
        """Rows, prediction rows, the records' device times, and how many were dead-lettered."""
        rows: list[Row] = []
        predictions: list[Row] = []
        times: list[float] = []
        dead = 0
        for msg in batch:
            with tracer.start_as_current_span(
                "sink.stage",
                context=extract_pairs(message_headers(msg)),
                kind=trace.SpanKind.CONSUMER,
            ):
                try:
                    record = DecodedRecord.model_validate_json(msg.value() or b"")
                except pydantic.ValidationError as exc:
                    dead += 1
                    err = exc.errors()[0]
                    detail = f"{'.'.join(map(str, err['loc'])) or 'body'}: {err['msg']}"
                    self.kafka.produce(
                        self.settings.dead_letter_topic,
                        msg.key(),
                        msg.value(),
                        dead_letter_headers(msg, STAGE, "invalid_record", detail),
                    )
                    log.warning("record dead-lettered", reason="invalid_record", detail=detail)
                    continue
                rows.extend(record_rows(record))
                times.append(record.timestamp)
                if (prediction := prediction_row(record)) is not None:
                    predictions.append(prediction)
                log.debug(
                    "record staged",
                    rows=len(record.measurements),
                    message_id=record.message_id,
                    device_id=record.device_id,
                )
        return rows, predictions, times, dead

    def handle_batch(self, batch: list[Message]) -> None:
        started = time.perf_counter()
        rows, predictions, times, dead = self.to_rows(batch)
        backoff = 0.5
        while True:
            try:
                result = self.writer.write(rows, predictions) if rows else None
                committed = time.time()
                break
            except psycopg.Error as exc:
                # Keep the batch and try again: its offsets are not committed, so even a
                # crash here loses nothing.
                WRITE_FAILURES.inc()
                log.warning(
                    "database write failed, retrying",
                    error=str(exc).strip(),
                    rows=len(rows),
                    retry_in=backoff,
                )
                time.sleep(backoff)
                backoff = min(backoff * 2, self.settings.db_retry_max_seconds)
        try:
            self.kafka.commit_after_delivery(batch)
        except KafkaException as exc:
            # Partitions revoked by a rebalance: the new owner replays, the DB dedups.
            log.warning("offset commit failed", error=str(exc))
        RECORDS.labels("written").inc(len(batch) - dead)
        RECORDS.labels("dead_lettered").inc(dead)
        BATCH_SIZE.observe(len(batch))
        BATCH_DURATION.observe(time.perf_counter() - started)
        for device_time in times:
            END_TO_END.observe(max(0.0, committed - device_time))
        if result is not None:
            ROWS.labels("inserted").inc(result.inserted)
            ROWS.labels("duplicate").inc(result.duplicates)
            PREDICTIONS_WRITTEN.inc(result.predictions_inserted)
            log.info(
                "batch written",
                records=len(batch),
                rows=len(rows),
                inserted=result.inserted,
                duplicates=result.duplicates,
                predictions=result.predictions_inserted,
                hourly_buckets=result.hourly_buckets,
                dead_lettered=dead,
                seconds=round(time.perf_counter() - started, 4),
            )

    def stop(self) -> None:
        self.running = False

    def close(self) -> None:
        self.kafka.close()
        self.writer.close()


def main() -> int:
    settings = Settings()
    start_observability("sink", settings, settings.metrics_port)
    return run_until_signalled("sink", Sink(settings))


if __name__ == "__main__":
    sys.exit(main())
