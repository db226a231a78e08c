"""What the chaos suite breaks, the traffic it breaks it under, and how it checks the damage.

A scenario runs on a pipeline of its own (topics, ingest, bridge, processor, sink) with a
steady stream from one simulator per profile and transport, each keeping a ledger. Faults
are real: SIGKILL / SIGSTOP of the service processes, and stop/start of the stack's Kafka,
Mosquitto and PostgreSQL through devstack's own scripts. The verdict compares the ledgers
with the database and every Kafka topic of the pipeline.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from confluent_kafka import Consumer, KafkaException, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from devicefleet_common.schemas import DLQ_STAGE_HEADER, Profile
from devicefleet_simulator.ledger import LedgerEntries, read_ledger
from tests.integration.conftest import Pipeline, json_lines, running_pipeline
from tests.support import DATABASE_URL, KAFKA, REPO, ServiceProcess, wait_for

# One simulator per profile and transport the platform supports.
STREAMS: list[tuple[Profile, str]] = [
    ("f2", "mqtt"),
    ("truck", "http"),
    ("generic", "mqtt"),
    ("generic", "http"),
]
DEVICES_PER_STREAM = 3
PUBLISH_INTERVAL = 0.1  # 10 msgs/s per device: 120 msgs/s over the four streams

# Short timeouts, so a fault is noticed (and outlived) within a scenario of tens of seconds:
# the bridge's broker drops it after 1.5 keepalives, the consumer groups evict a member after
# session.timeout.ms (15 s, devicefleet_common.kafka).
PIPELINE_OVERRIDES = {"bridge": {"mqtt_keepalive": "4"}}
SIMULATOR_SETTINGS: dict[str, Any] = {
    "device_count": DEVICES_PER_STREAM,
    "publish_interval": PUBLISH_INTERVAL,
    "drop_rate": 0,
    "jitter_rate": 0,
    "duplicate_rate": 0,
    "retry_max_attempts": 3,
    "retry_base": 0.1,
    "retry_max": 1.0,
    "breaker_fail_max": 3,
    "breaker_reset_timeout": 1.0,
    "request_timeout": 2.0,
    "mqtt_keepalive": 4,
    # The buffer must drain before a simulator exits: every acknowledgement counts.
    "shutdown_timeout": 120,
    "log_level": "INFO",
}


@dataclass
class Stream:
    profile: Profile
    transport: str
    fleet: str
    ledger: Path
    process: ServiceProcess

    @property
    def name(self) -> str:
        return f"{self.profile}/{self.transport}"


@dataclass
class ScenarioResult:
    """One row of the chaos table."""

    scenario: str
    fault: str
    acknowledged: int  # well-formed messages the simulators' ledgers say were delivered
    stored: int  # distinct message ids in the database for the scenario's fleets
    lost: int  # acknowledged, not stored
    duplicated: int  # messages stored with more rows than metrics
    unexpected: int  # stored, never acknowledged nor known to the simulators
    raw_records: int  # records on the raw topic (retries and replays included)
    raw_messages: int  # distinct message ids among them
    decoded_messages: int
    processor_dead_letters: int
    ingest_received: int  # the last ingest instance's counters
    ingest_outcomes: dict[str, int] = field(default_factory=dict)
    breaker_opened: int = 0  # simulators whose breaker opened at least once
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class Chaos:
    """A private pipeline plus its traffic; the faults a scenario composes."""

    def __init__(self, pipeline: Pipeline, workdir: Path) -> None:
        self.pipeline = pipeline
        self.workdir = workdir
        self.streams: list[Stream] = []
        self.summaries: list[dict[str, Any]] = []  # the simulators' final summaries, in order

    # --- traffic ----------------------------------------------------------------------------

    def start_traffic(self, messages_per_device: int, **settings: Any) -> None:
        """One simulator per stream; ``settings`` override SIMULATOR_SETTINGS."""
        for profile, transport in STREAMS:
            fleet = self.pipeline.fleet(f"chaos-{profile}-{transport}")
            self.pipeline.register(profile, fleet, DEVICES_PER_STREAM)
            ledger = self.workdir / f"ledger-{profile}-{transport}.txt"
            process = self.pipeline.simulator(
                f"sim-{profile}-{transport}",
                profile,
                transport,
                fleet,
                ledger_path=ledger,
                max_messages_per_device=messages_per_device,
                **({"seed": 11} | SIMULATOR_SETTINGS | settings),
            )
            self.streams.append(Stream(profile, transport, fleet, ledger, process))
        for stream in self.streams:
            stream.process.start(60)

    def acknowledged_so_far(self) -> int:
        return sum(
            read_ledger(s.ledger).acknowledged_total for s in self.streams if s.ledger.exists()
        )

    def wait_until_flowing(self, messages: int = 100) -> None:
        wait_for(
            lambda: self.acknowledged_so_far() >= messages,
            60,
            message=f"{messages} acknowledged messages before the fault",
        )

    def finish_traffic(self, timeout: float = 240) -> list[dict[str, Any]]:
        """Wait for every simulator to end by itself; their final summaries."""
        summaries = []
        deadline = time.monotonic() + timeout
        for stream in self.streams:
            proc = stream.process.proc
            assert proc is not None
            try:
                code = proc.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                stream.process.stop()
                raise AssertionError(
                    f"simulator {stream.name} still running after {timeout}s:\n"
                    f"{stream.process.log_tail()}"
                ) from None
            assert code == 0, f"simulator {stream.name} exited {code}:\n{stream.process.log_tail()}"
            lines = [
                line
                for line in json_lines(stream.process.logs())
                if line.get("message") == "simulator stopped"
            ]
            assert lines, f"no final summary from {stream.name}:\n{stream.process.log_tail()}"
            summaries.append({"stream": stream.name} | lines[-1])
        self.summaries = summaries
        return summaries

    def stop_traffic(self) -> None:
        for stream in self.streams:
            stream.process.stop()

    # --- faults -----------------------------------------------------------------------------

    def kill(self, service: str) -> None:
        """SIGKILL: no shutdown hooks, no flush, exactly what a crash or an OOM kill does."""
        self.pipeline.services[service].kill()

    def start(self, service: str) -> None:
        self.pipeline.restart(service)

    def pause(self, service: str) -> None:
        self._signal(service, signal.SIGSTOP)

    def resume(self, service: str) -> None:
        self._signal(service, signal.SIGCONT)

    def _signal(self, service: str, sig: signal.Signals) -> None:
        proc = self.pipeline.services[service].proc
        assert proc is not None
        assert proc.poll() is None, f"{service} is not running"
        os.kill(proc.pid, sig)

    @staticmethod
    def stop_component(*components: str) -> None:
        """Stop stack components (kafka, mosquitto, postgres) the way devstack does: SIGTERM,
        then SIGKILL after the component's grace period."""
        _devstack("down.sh", *components)

    @staticmethod
    def start_component(*components: str) -> None:
        _devstack("up.sh", *components)

    # --- verdict ----------------------------------------------------------------------------

    def verdict(self, scenario: str, fault: str) -> ScenarioResult:
        # A connection of its own: one opened before the scenario restarted PostgreSQL is dead.
        with psycopg.connect(DATABASE_URL, autocommit=True) as db:
            return self._verdict(scenario, fault, db)

    def _verdict(self, scenario: str, fault: str, db: psycopg.Connection[Any]) -> ScenarioResult:
        started = time.monotonic()
        summaries = self.finish_traffic()
        for summary in summaries:
            assert summary["invariant_holds"] is True, summary
            assert summary["buffered"] == 0, f"buffer not drained: {summary}"
            assert summary["bufferOverflow"] == 0, summary
            assert summary["rejected"] == 0, summary
        ledgers = {s.fleet: read_ledger(s.ledger) for s in self.streams}
        for stream, summary in zip(self.streams, summaries, strict=True):
            entries = ledgers[stream.fleet]
            assert entries.acknowledged_total == summary["acknowledged"], summary
        acknowledged = set().union(*(e.acknowledged for e in ledgers.values()))
        fleets = list(ledgers)

        # Everything acknowledged reaches the database; wait for the tail of the pipeline.
        def stored_now() -> set[str]:
            return stored_ids(db, fleets)

        with contextlib.suppress(AssertionError):  # reported as lost below, with the numbers
            wait_for(lambda: acknowledged <= stored_now(), 120, message="acknowledged rows")
        stored = stored_now()
        known = set().union(*(_all_ids(e) for e in ledgers.values()))
        raw = _topic_records(self.pipeline.raw_topic)
        decoded = _topic_records(self.pipeline.decoded_topic)
        dead = _topic_records(self.pipeline.dead_letter_topic)
        raw_ids = {r["message_id"] for r in raw}
        processor_dead = {r["message_id"] for r in dead if r["stage"] == "processor"}
        decoded_ids = {r["message_id"] for r in decoded}
        ingest = _ingest_counters(self.pipeline)
        result = ScenarioResult(
            scenario=scenario,
            fault=fault,
            acknowledged=len(acknowledged),
            stored=len(stored),
            lost=len(acknowledged - stored),
            duplicated=_duplicated(db, fleets),
            unexpected=len(stored - known),
            raw_records=len(raw),
            raw_messages=len(raw_ids),
            decoded_messages=len(decoded_ids),
            processor_dead_letters=len(processor_dead),
            ingest_received=ingest.pop("received"),
            ingest_outcomes=ingest,
            breaker_opened=sum(1 for s in summaries if s["breaker_transitions"] > 0),
            seconds=round(time.monotonic() - started, 1),
        )
        # The stages reconcile: every raw message was decoded or dead-lettered by the
        # processor, and every acknowledged message went through raw.
        assert raw_ids == decoded_ids | processor_dead, {
            "raw, neither decoded nor dead-lettered": sorted(
                raw_ids - decoded_ids - processor_dead
            )[:5],
            "decoded or dead-lettered, not on raw": sorted(
                (decoded_ids | processor_dead) - raw_ids
            )[:5],
        }
        not_on_raw = acknowledged - raw_ids
        assert not not_on_raw, {
            "acknowledged, not on the raw topic, per fleet": {
                fleet: len(entries.acknowledged & not_on_raw) for fleet, entries in ledgers.items()
            },
            "first": sorted(not_on_raw, key=message_sequence)[:10],
            "result": result,
        }
        assert result.ingest_received == sum(result.ingest_outcomes.values()), result
        return result


def message_sequence(message_id: str) -> tuple[str, int]:
    """(device id, sequence number) of a simulator's ``device:boot_epoch:sequence`` id."""
    head, _, sequence = message_id.rpartition(":")
    return head.rpartition(":")[0], int(sequence)


def _all_ids(entries: LedgerEntries) -> set[str]:
    return entries.acknowledged | entries.malformed | entries.dropped | entries.rejected


def _devstack(script: str, *components: str) -> None:
    subprocess.run(
        ["bash", str(REPO / "devstack" / script), *components],
        check=True,
        capture_output=True,
        timeout=180,
    )


def stored_ids(db: psycopg.Connection[Any], fleets: list[str]) -> set[str]:
    rows = db.execute(
        "SELECT DISTINCT message_id FROM iot_measurements WHERE attributes->>'fleet' = ANY(%s)",
        (fleets,),
    ).fetchall()
    return {r[0] for r in rows}


def _duplicated(db: psycopg.Connection[Any], fleets: list[str]) -> int:
    """Messages with more rows than distinct metrics: a second copy under another time would
    slip past the unique key (message_id, metric, time), so count it here."""
    row = db.execute(
        """SELECT count(*) FROM (
             SELECT message_id FROM iot_measurements WHERE attributes->>'fleet' = ANY(%s)
             GROUP BY message_id HAVING count(*) > count(DISTINCT metric)) d""",
        (fleets,),
    ).fetchone()
    return int(row[0]) if row else 0


def _topic_records(topic: str) -> list[dict[str, str]]:
    """Every record of a topic: its message id and dead-letter stage (if any)."""
    consumer = Consumer(
        {
            "bootstrap.servers": KAFKA,
            "group.id": f"chaos-audit-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        partitions = [TopicPartition(topic, p, 0) for p in metadata.partitions]
        ends = {
            tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions
        }
        consumer.assign(partitions)
        records: list[dict[str, str]] = []
        remaining = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + 60
        while remaining and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            headers = {k: (v or b"").decode() for k, v in msg.headers() or []}
            value = json.loads(msg.value() or b"{}")
            records.append(
                {
                    "message_id": value.get("message_id", ""),
                    "stage": headers.get(DLQ_STAGE_HEADER, ""),
                }
            )
            if (msg.offset() or 0) + 1 >= ends[msg.partition() or 0]:
                remaining.discard(msg.partition() or 0)
        assert not remaining, f"could not read {topic} to its end (partitions {remaining})"
        return records
    finally:
        consumer.close()


def _ingest_counters(pipeline: Pipeline) -> dict[str, int]:
    text = httpx.get(f"{pipeline.ingest_url}/metrics", timeout=5).text
    counters: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ingest_messages_received_total":
                counters["received"] = int(sample.value)
            elif sample.name == "ingest_messages_total":
                counters[sample.labels["outcome"]] = int(sample.value)
    return counters


@contextmanager
def chaos_pipeline(
    log_dir: Path, overrides: dict[str, dict[str, str]] | None = None
) -> Iterator[Chaos]:
    run_id = uuid.uuid4().hex[:8]
    settings = {
        service: PIPELINE_OVERRIDES.get(service, {}) | (overrides or {}).get(service, {})
        for service in ("ingest", "bridge", "processor", "sink")
    }
    with running_pipeline(run_id, log_dir, settings) as pipeline:
        chaos = Chaos(pipeline, log_dir)
        try:
            yield chaos
        finally:
            for service in pipeline.services.values():  # a failed scenario may leave one paused
                if service.alive() and service.proc is not None:
                    os.kill(service.proc.pid, signal.SIGCONT)
            chaos.stop_traffic()
