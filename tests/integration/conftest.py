"""A private copy of the pipeline per test session, on the shared local stack.

Every session gets its own Kafka topics, consumer groups, MQTT client id and HTTP/metrics
ports, so the tests neither disturb nor are disturbed by a platform started with ``make up``.
Device ids are unique per session too; assertions only look at their own devices.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from confluent_kafka import Consumer, KafkaException
from confluent_kafka.admin import AdminClient

from devicefleet_bootstrap.main import create_topics, migrate, register_devices
from devicefleet_bootstrap.settings import Settings as BootstrapSettings
from devicefleet_common.schemas import Profile
from devicefleet_ingest.bridge.settings import BridgeSettings
from tests.integration.mqtt import forget_session
from tests.support import (
    DATABASE_URL,
    KAFKA,
    MQTT_PORT,
    PORTS,
    ServiceProcess,
    free_port,
    wait_for,
)

PROMETHEUS_URL = f"http://127.0.0.1:{PORTS['PROMETHEUS_PORT']}"
# Prometheus' file-based discovery directory (devstack/components/prometheus.sh).
PROMETHEUS_SD_DIR = (
    Path(os.environ.get("DEVSTACK_STATE", Path.home() / ".local/state/devicefleet"))
    / "conf/prometheus/sd"
)


def _require(component: str, check: Callable[[], object]) -> None:
    try:
        check()
    except Exception as exc:
        pytest.fail(
            f"{component} is not reachable ({exc!r}). Start the local stack with `make up` "
            f"(or `bash devstack/up.sh`); `make status` shows what is running.",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def stack() -> dict[str, str]:
    """The local stack is up: every component answers, else the session fails."""

    def kafka() -> None:
        AdminClient({"bootstrap.servers": KAFKA}).list_topics(timeout=5)

    def postgres() -> None:
        with psycopg.connect(DATABASE_URL, connect_timeout=5) as conn:
            conn.execute("SELECT 1")

    def mosquitto() -> None:
        socket.create_connection(("127.0.0.1", MQTT_PORT), timeout=5).close()

    def prometheus() -> None:
        httpx.get(f"{PROMETHEUS_URL}/-/ready", timeout=5).raise_for_status()

    _require("Kafka", kafka)
    _require("PostgreSQL", postgres)
    _require("Mosquitto", mosquitto)
    _require("Prometheus", prometheus)
    return PORTS


@dataclass
class Pipeline:
    """Names and handles of this session's pipeline."""

    run_id: str
    raw_topic: str
    decoded_topic: str
    dead_letter_topic: str
    ingest_url: str
    log_dir: Path
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    env: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        """The ``namespace`` label of this session's scrape targets (see scrape_target)."""
        return f"devicefleet-test-{self.run_id}"

    def fleet(self, name: str) -> str:
        return f"{name}-{self.run_id}"

    def simulator(
        self,
        name: str,
        profile: Profile,
        transport: str,
        fleet: str,
        ingest_url: str | None = None,
        **settings: Any,
    ) -> ServiceProcess:
        """A simulator process publishing into this session's pipeline (not started yet);
        ``settings`` are simulator settings (``drop_rate=0`` -> ``SIMULATOR_DROP_RATE=0``)."""
        port = free_port()
        env = {
            "SIMULATOR_FLEET": fleet,
            "SIMULATOR_PROFILE": profile,
            "SIMULATOR_TRANSPORT": transport,
            "SIMULATOR_MQTT_PORT": str(MQTT_PORT),
            "SIMULATOR_INGEST_URL": ingest_url or self.ingest_url,
            "SIMULATOR_STATUS_PORT": str(port),
            "SIMULATOR_LOG_LEVEL": "INFO",
        } | {f"SIMULATOR_{k.upper()}": str(v) for k, v in settings.items()}
        return ServiceProcess(
            name,
            ["devicefleet-simulator"],
            env,
            self.log_dir,
            health_url=f"http://127.0.0.1:{port}/health",
        )

    def register(self, profile: Profile, fleet: str, count: int, start: int = 0) -> None:
        register_devices(
            self.bootstrap_settings().database_url, profile, fleet, count, start, site="test-site"
        )

    def bootstrap_settings(self) -> BootstrapSettings:
        return BootstrapSettings(
            database_url=DATABASE_URL,
            kafka_bootstrap_servers=KAFKA,
            raw_topic=self.raw_topic,
            decoded_topic=self.decoded_topic,
            dead_letter_topic=self.dead_letter_topic,
            topic_partitions=3,
        )

    def restart(self, name: str) -> ServiceProcess:
        return self.services[name].start()  # appends to the same log file


def scrape_target(service: str, address: str, namespace: str, pod: str) -> dict[str, Any]:
    """A file_sd entry for Prometheus' ``devicefleet-tests`` job, labelled like the target of
    a ServiceMonitor in Kubernetes: ``job`` devicefleet-<service> (a target's own job label
    wins over the job_name), ``namespace`` and ``pod``."""
    return {
        "targets": [address],
        "labels": {"job": f"devicefleet-{service}", "namespace": namespace, "pod": pod},
    }


def _service_env(prefix: str, pipeline: Pipeline, **extra: str) -> dict[str, str]:
    env = {
        f"{prefix}KAFKA_BOOTSTRAP_SERVERS": KAFKA,
        f"{prefix}RAW_TOPIC": pipeline.raw_topic,
        f"{prefix}DECODED_TOPIC": pipeline.decoded_topic,
        f"{prefix}DEAD_LETTER_TOPIC": pipeline.dead_letter_topic,
        f"{prefix}DATABASE_URL": DATABASE_URL,
        f"{prefix}LOG_LEVEL": "DEBUG",
        f"{prefix}MQTT_PORT": str(MQTT_PORT),
    }
    env.update({f"{prefix}{k.upper()}": v for k, v in extra.items()})
    return env


# Pipelines running now (the session's, a module's, a chaos scenario's). Every bridge
# subscribes to every device topic, so each one also stores the others' MQTT fleets.
LIVE_PIPELINES: list[Pipeline] = []


@contextmanager
def running_pipeline(
    run_id: str, log_dir: Path, overrides: dict[str, dict[str, str]] | None = None
) -> Iterator[Pipeline]:
    """Topics, the four services (as processes) and Prometheus targets of one private
    pipeline; ``overrides`` adds settings per service (``{"bridge": {"mqtt_keepalive": "5"}}``).
    Everything is stopped and the topics deleted on exit."""
    ingest_port = free_port()
    p = Pipeline(
        run_id=run_id,
        raw_topic=f"test_raw_{run_id}",
        decoded_topic=f"test_decoded_{run_id}",
        dead_letter_topic=f"test_dlq_{run_id}",
        ingest_url=f"http://127.0.0.1:{ingest_port}",
        log_dir=log_dir,
    )
    migrate(p.bootstrap_settings())
    create_topics(p.bootstrap_settings())
    bridge_metrics, processor_metrics, sink_metrics = free_port(), free_port(), free_port()
    settings = {
        "ingest": {"port": str(ingest_port)},
        "bridge": {
            "client_id": f"test-bridge-{run_id}",
            "metrics_port": str(bridge_metrics),
            "session_expiry_seconds": "600",
        },
        "processor": {
            "group_id": f"test-processor-{run_id}",
            "metrics_port": str(processor_metrics),
            "registry_miss_ttl_seconds": "0.2",
        },
        "sink": {
            "group_id": f"test-sink-{run_id}",
            "metrics_port": str(sink_metrics),
            "batch_timeout": "0.3",
        },
    }
    p.env = {
        name: _service_env(f"{name.upper()}_", p, **(values | (overrides or {}).get(name, {})))
        for name, values in settings.items()
    }
    health = {
        "ingest": f"{p.ingest_url}/health",
        # Not just up: until Mosquitto granted its subscriptions, a new session gets nothing,
        # and the broker acknowledges what devices publish meanwhile to no one.
        "bridge": f"http://127.0.0.1:{bridge_metrics}/ready",
        "processor": f"http://127.0.0.1:{processor_metrics}/metrics",
        "sink": f"http://127.0.0.1:{sink_metrics}/metrics",
    }
    sd_file = PROMETHEUS_SD_DIR / f"tests-{run_id}.json"
    try:
        for name in ("sink", "processor", "bridge", "ingest"):
            p.services[name] = ServiceProcess(
                name, [f"devicefleet-{name}"], p.env[name], log_dir, health[name]
            ).start()
        sd_file.write_text(
            json.dumps(
                [
                    scrape_target(name, url.split("/")[2], p.namespace, f"{name}-{run_id}")
                    for name, url in health.items()
                ]
            )
        )
        LIVE_PIPELINES.append(p)
        yield p
    finally:
        if p in LIVE_PIPELINES:
            LIVE_PIPELINES.remove(p)
        sd_file.unlink(missing_ok=True)
        for service in p.services.values():
            service.stop()
        admin = AdminClient({"bootstrap.servers": KAFKA})
        admin.delete_topics([p.raw_topic, p.decoded_topic, p.dead_letter_topic])
        if "bridge" in p.services:
            _forget_bridge_session(p.env["bridge"])


def _forget_bridge_session(env: dict[str, str]) -> None:
    """Best effort, on the way out: a scenario may have left the broker stopped, and that
    must not hide how the test itself ended."""
    bridge = BridgeSettings(**{k.removeprefix("BRIDGE_").lower(): v for k, v in env.items()})
    try:
        forget_session(bridge, bridge.client_id)
    except (AssertionError, OSError) as exc:
        warnings.warn(f"bridge session {bridge.client_id} left on the broker: {exc}", stacklevel=2)


@pytest.fixture(scope="session")
def pipeline(stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with running_pipeline(uuid.uuid4().hex[:8], tmp_path_factory.mktemp("service-logs")) as p:
        yield p


@pytest.fixture
def private_ingest(pipeline: Pipeline) -> Iterator[ServiceProcess]:
    """An ingest instance of this session's pipeline that a test may kill and restart."""
    port = free_port()
    process = ServiceProcess(
        f"ingest-{port}",
        ["devicefleet-ingest"],
        pipeline.env["ingest"] | {"INGEST_PORT": str(port)},
        pipeline.log_dir,
        health_url=f"http://127.0.0.1:{port}/health",
    ).start()
    yield process
    process.stop()


@pytest.fixture
def db(stack: dict[str, str]) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        yield conn


def rows_for(db: psycopg.Connection[Any], message_id: str) -> list[dict[str, Any]]:
    cur = db.cursor(row_factory=psycopg.rows.dict_row)
    return cur.execute(
        "SELECT * FROM iot_measurements WHERE message_id = %s ORDER BY metric", (message_id,)
    ).fetchall()


def wait_for_rows(
    db: psycopg.Connection[Any], message_id: str, timeout: float = 30.0
) -> list[dict[str, Any]]:
    return wait_for(
        lambda: rows_for(db, message_id), timeout, message=f"rows of message {message_id}"
    )


def dead_letters(pipeline: Pipeline, key: str, timeout: float = 30.0) -> dict[str, str]:
    """Headers of the first dead-letter record whose key is ``key`` (a device id)."""
    consumer = Consumer(
        {
            "bootstrap.servers": KAFKA,
            "group.id": f"test-dlq-reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([pipeline.dead_letter_topic])
    try:

        def find() -> dict[str, str] | None:
            msg = consumer.poll(1.0)
            if msg is None:
                return None
            if msg.error():
                raise KafkaException(msg.error())
            if (msg.key() or b"").decode() != key:
                return None
            headers = msg.headers() or []
            return {k: (v or b"").decode() for k, v in headers} | {
                "_value": (msg.value() or b"").decode(errors="replace")
            }

        return wait_for(find, timeout, interval=0, message=f"dead letter for {key}")
    finally:
        consumer.close()


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
