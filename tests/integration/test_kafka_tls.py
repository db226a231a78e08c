"""Kafka over TLS: devstack's broker has a TLS listener (KAFKA_TLS_PORT, server certificate from
the DeviceFleet dev CA made by devstack/tls.sh). With the CA, the project's clients produce and
consume over it, and the whole pipeline runs on it; without the CA the client refuses the broker
(an SSL error is reported and nothing is delivered). On the mutual TLS listener
(KAFKA_MTLS_PORT) a client also needs a certificate from that CA."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from devicefleet_bootstrap.main import create_topics
from devicefleet_bootstrap.settings import Settings as BootstrapSettings
from devicefleet_common.devices import device_id
from devicefleet_common.kafka import consumer_config, producer_config
from devicefleet_common.schemas import make_message_id
from tests.integration.conftest import running_pipeline, wait_for_rows
from tests.support import KAFKA, PORTS, wait_for

STATE = Path(os.environ.get("DEVSTACK_STATE", Path.home() / ".local/state/devicefleet"))
CA_FILE = STATE / "tls" / "ca.crt"
KAFKA_TLS = f"127.0.0.1:{PORTS['KAFKA_TLS_PORT']}"
# Mutual TLS: the same broker, client certificates required (devstack's client cert).
KAFKA_MTLS = f"127.0.0.1:{PORTS['KAFKA_MTLS_PORT']}"
CLIENT_CERT = STATE / "tls" / "kafka-client.crt"
CLIENT_KEY = STATE / "tls" / "kafka-client.key"


def tls_settings(run_id: str, **overrides: Any) -> BootstrapSettings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": KAFKA_TLS,
        "kafka_ssl_ca_file": CA_FILE,
        "raw_topic": f"test_tls_raw_{run_id}",
        "decoded_topic": f"test_tls_decoded_{run_id}",
        "dead_letter_topic": f"test_tls_dlq_{run_id}",
        "topic_partitions": 1,
        "wait_timeout": 20,
    }
    return BootstrapSettings(**(values | overrides))


@pytest.fixture
def tls_topic(stack: dict[str, str]) -> Any:
    """A topic created over the TLS listener (by bootstrap's own create_topics)."""
    run_id = uuid.uuid4().hex[:8]
    settings = tls_settings(run_id)
    assert CA_FILE.is_file(), f"{CA_FILE} missing: bash devstack/up.sh kafka makes it"
    create_topics(settings)
    yield settings.raw_topic
    AdminClient({"bootstrap.servers": KAFKA}).delete_topics(
        [settings.raw_topic, settings.decoded_topic, settings.dead_letter_topic]
    )


def produce_one(
    bootstrap: str, security: dict[str, str], topic: str, value: bytes
) -> tuple[list[KafkaError], list[KafkaError]]:
    """One record, waited for: (the client's errors, the delivery errors)."""
    client_errors: list[KafkaError] = []
    delivery_errors: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            delivery_errors.append(err)

    producer = Producer(
        producer_config(
            bootstrap,
            "test-tls",
            **security,
            **{"message.timeout.ms": 5000, "error_cb": client_errors.append},
        )
    )
    producer.produce(topic, value=value, on_delivery=delivered)
    producer.flush(15)
    return client_errors, delivery_errors


def read_topic(topic: str, security: dict[str, str], expected: int) -> list[bytes]:
    """The topic's records over the TLS listener: waits for ``expected`` of them, then a
    little longer, so that one too many shows."""
    consumer = Consumer(
        consumer_config(KAFKA_TLS, f"test-tls-{uuid.uuid4().hex[:8]}", "test-tls", **security)
    )
    consumer.subscribe([topic])
    received: list[bytes] = []

    def poll() -> None:
        msg = consumer.poll(1.0)
        if msg is not None and msg.error() is None:
            received.append(msg.value() or b"")

    try:
        wait_for(
            lambda: poll() or len(received) >= expected,
            30,
            interval=0,
            message=f"{expected} records over TLS",
        )
        for _ in range(2):
            poll()
    finally:
        consumer.close()
    return received


def test_security_config_from_settings() -> None:
    assert BootstrapSettings().kafka_security_config() == {}
    assert tls_settings("x").kafka_security_config() == {
        "security.protocol": "ssl",
        "ssl.ca.location": str(CA_FILE),
    }
    # SSL without a CA file: the system's trust store.
    system_store = tls_settings("x", kafka_ssl_ca_file=None, kafka_security_protocol="SSL")
    assert system_store.kafka_security_config() == {"security.protocol": "ssl"}


def test_produce_and_consume_over_tls(tls_topic: str) -> None:
    security = tls_settings("x").kafka_security_config()
    producer = Producer(producer_config(KAFKA_TLS, "test-tls", **security))
    errors: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            errors.append(err)

    sent = [f"tls-{i}".encode() for i in range(5)]
    for value in sent:
        producer.produce(tls_topic, value=value, on_delivery=delivered)
    assert producer.flush(20) == 0
    assert errors == []

    received = read_topic(tls_topic, security, len(sent))
    assert received == sent


@pytest.mark.parametrize(
    "security",
    [{"security.protocol": "ssl"}, {}],
    ids=["tls-without-the-ca", "plaintext-to-the-tls-port"],
)
def test_without_the_ca_nothing_is_delivered(tls_topic: str, security: dict[str, str]) -> None:
    client_errors, delivery_errors = produce_one(KAFKA_TLS, security, tls_topic, b"must not arrive")
    assert len(delivery_errors) == 1  # timed out: never delivered
    assert delivery_errors[0].code() == KafkaError._MSG_TIMED_OUT
    reasons = " ".join(e.str() for e in client_errors)
    if security:
        # librdkafka says why: the broker's certificate does not verify.
        assert "SSL" in reasons, reasons
        assert "certificate verify failed" in reasons, reasons
    else:
        assert client_errors, "a plaintext client talking to the TLS port must report errors"

    # The topic over TLS (with the CA) holds nothing.
    security_ok = tls_settings("x").kafka_security_config()
    consumer = Consumer(
        consumer_config(KAFKA_TLS, f"test-tls-{uuid.uuid4().hex[:8]}", "test-tls", **security_ok)
    )
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(tls_topic, 0), timeout=10)
    finally:
        consumer.close()
    assert high - low == 0


def test_mutual_tls_admits_only_a_client_with_a_certificate(tls_topic: str) -> None:
    """On the mutual TLS listener the broker asks for a client certificate: with devstack's
    (signed by the dev CA) records are delivered; with the CA alone the handshake is refused,
    an error says so and nothing arrives."""
    assert CLIENT_CERT.is_file(), f"{CLIENT_CERT} missing: bash devstack/up.sh kafka makes it"
    with_cert = tls_settings(
        "x",
        kafka_bootstrap_servers=KAFKA_MTLS,
        kafka_ssl_cert_file=CLIENT_CERT,
        kafka_ssl_key_file=CLIENT_KEY,
    ).kafka_security_config()
    assert with_cert["ssl.certificate.location"] == str(CLIENT_CERT)

    _, failed = produce_one(KAFKA_MTLS, with_cert, tls_topic, b"with a certificate")
    assert failed == []

    ca_only = tls_settings("x", kafka_bootstrap_servers=KAFKA_MTLS).kafka_security_config()
    client_errors, failed = produce_one(KAFKA_MTLS, ca_only, tls_topic, b"must not arrive")
    assert [e.code() for e in failed] == [KafkaError._MSG_TIMED_OUT]
    reasons = " ".join(e.str() for e in client_errors)
    assert "SSL" in reasons or "Disconnected" in reasons, reasons
    assert read_topic(tls_topic, with_cert, 1) == [b"with a certificate"]


def test_the_pipeline_runs_over_tls(
    stack: dict[str, str], db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """Ingest, processor and sink (and the bridge) on the TLS listener only: a reading POSTed
    to ingest is stored."""
    run_id = f"tls{uuid.uuid4().hex[:6]}"
    over_tls = {"kafka_bootstrap_servers": KAFKA_TLS, "kafka_ssl_ca_file": str(CA_FILE)}
    services = ("ingest", "bridge", "processor", "sink")
    with running_pipeline(run_id, tmp_path, {name: over_tls for name in services}) as pipeline:
        for name in services:
            assert pipeline.env[name][f"{name.upper()}_KAFKA_BOOTSTRAP_SERVERS"] == KAFKA_TLS
        fleet = pipeline.fleet("tls")
        pipeline.register("generic", fleet, 1)
        dev = device_id("generic", fleet, 0)
        body = {
            "device_id": dev,
            "boot_epoch": 1,
            "sequence": 1,
            "timestamp": datetime.now(UTC).isoformat(),
            "payload": {"temperature": 19.5},
        }
        response = httpx.post(f"{pipeline.ingest_url}/ingest", json=body, timeout=15)
        assert response.status_code == 200, response.text
        [row] = wait_for_rows(db, make_message_id(dev, 1, 1))
        assert row["value"] == 19.5
