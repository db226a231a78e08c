"""Fuzz targets: one function per parser of untrusted bytes, each checking the parser's
contract and raising ``ContractBroken`` (or letting an unexpected exception through) when it
does not hold. Pure, no I/O but reading docs/pipeline.md once; the driver is
``bench/fuzz_decoders.py``, the corpus replay ``tests/unit/bench/test_fuzz_corpus.py``.

Contracts:

- ``processor``: any ``raw_iot_data`` value gives one output, decoded into a record the sink
  can store or dead-lettered with a documented ``dlq-reason`` and the value kept as it came.
- ``bridge``: any MQTT message (first line the topic, the rest the payload) becomes an envelope
  that survives the trip through Kafka unchanged, and then the ``processor`` contract holds.
- ``http``: any body is a valid ``TelemetryIn``/``TelemetryBatchIn`` or a ``ValidationError``
  (the API's 400); a valid one's envelope meets the ``processor`` contract.
- ``sink``: any ``decoded_iot_data`` value is refused by the schema (dead-lettered) or turns
  into rows PostgreSQL can store (no NUL, bounded ids and names, finite values, valid times).
"""

from __future__ import annotations

import base64
import json
import random
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pydantic
from confluent_kafka import Message

from devicefleet_common.devices import default_parameters, device_id
from devicefleet_common.kafka import header_value
from devicefleet_common.schemas import (
    DLQ_REASON_HEADER,
    MAX_MESSAGE_ID_LENGTH,
    MAX_METRIC_LENGTH,
    DecodedRecord,
    RawEnvelope,
    TelemetryBatchIn,
    TelemetryIn,
)
from devicefleet_ingest.bridge.envelope import mqtt_envelope
from devicefleet_ingest.envelope import http_envelope
from devicefleet_processor.decoders import DeviceParams
from devicefleet_processor.pipeline import process
from devicefleet_processor.registry import DeviceRegistry, RegistryUnavailable
from devicefleet_sink.rows import COLUMNS, prediction_row, record_rows

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "fuzz" / "corpus"
NOW = 1_800_000_000.0  # the processor's clock: the seed corpus uses times around it
MAX_FUTURE, MAX_AGE = 3600.0, 30 * 86400.0

# The registry the fuzzed records are decoded against: one device per profile.
DEVICES = {
    d.device_id: d
    for d in (
        DeviceParams(
            device_id("f2", "fuzz", 0), "f2", "fuzz", "site", "F2", default_parameters("f2")
        ),
        DeviceParams("truck-fuzz-00000", "truck", "fuzz"),
        DeviceParams("sensor-fuzz-00000", "generic", "fuzz", params={"units": {"t": "K"}}),
    )
}


class ContractBroken(AssertionError):
    pass


def require(condition: bool, what: str) -> None:
    if not condition:
        raise ContractBroken(what)


class Registry(DeviceRegistry):
    """``DEVICES`` without PostgreSQL; like the database it cannot look up a text with NUL
    (psycopg raises, which the registry reports as unavailable: the batch would be retried
    forever)."""

    def __init__(self) -> None:
        super().__init__("", refresh_seconds=1e9, miss_ttl=1e9)

    def get(self, device_id: str) -> DeviceParams | None:
        if "\x00" in device_id:
            raise RegistryUnavailable("registry_lookup: text fields cannot contain NUL")
        return DEVICES.get(device_id)


REGISTRY = Registry()


@cache
def documented_reasons() -> frozenset[str]:
    """The ``dlq-reason`` values in docs/pipeline.md's table."""
    text = (REPO / "docs" / "pipeline.md").read_text()
    table = text[text.index("Dead-letter reasons") :].split("\n\n")[1]
    cells = re.findall(r"^\| ((?:`[a-z_]+`(?: / )?)+)", table, re.M)
    return frozenset(reason for cell in cells for reason in re.findall(r"`([a-z_]+)`", cell))


def fuzz_processor(data: bytes) -> None:
    msg = Message(topic="raw", partition=0, offset=1, key=b"k", value=data, headers=[])
    out = process(msg, REGISTRY, MAX_FUTURE, MAX_AGE, now=NOW)
    if out.dead_letter:
        require(out.reason in documented_reasons(), f"undocumented reason {out.reason!r}")
        require(header_value(out.headers, DLQ_REASON_HEADER) == out.reason, "reason header")
        require(out.value == data, "dead letter must keep the record as it came")
    else:
        fuzz_sink(out.value, must_be_valid=True)


def fuzz_sink(data: bytes, must_be_valid: bool = False) -> None:
    try:
        record = DecodedRecord.model_validate_json(data)
    except pydantic.ValidationError:
        require(not must_be_valid, "the processor produced a record the sink refuses")
        return
    rows = record_rows(record)
    prediction_row(record)
    require(len(rows) == len(record.measurements), "one row per measurement")
    for row in rows:
        stored = dict(zip(COLUMNS, row, strict=True))
        require(not any("\x00" in v for v in row if isinstance(v, str)), "NUL in a text column")
        require(0 < len(stored["metric"]) <= MAX_METRIC_LENGTH, "metric name length")
        require(0 < len(stored["message_id"]) <= MAX_MESSAGE_ID_LENGTH, "message id length")


def fuzz_bridge(data: bytes) -> None:
    head, _, payload = data.partition(b"\n")
    try:
        topic = head.decode()
    except UnicodeDecodeError:
        return  # MQTT topics are UTF-8; the broker refuses others
    if any(c in topic for c in "\x00+#"):
        return  # not publishable
    envelope = mqtt_envelope(topic, payload, [], NOW)
    value = envelope.model_dump_json().encode()
    require(RawEnvelope.model_validate_json(value) == envelope, "envelope round trip")
    if envelope.payload_encoding == "base64":
        require(base64.b64decode(envelope.payload) == payload, "binary payload kept")
    elif envelope.payload_encoding == "text":
        require(envelope.payload.encode() == payload, "text payload kept")
    else:
        require(envelope.payload == orjson.loads(payload), "JSON payload kept")
    fuzz_processor(value)


def fuzz_http(data: bytes) -> None:
    try:
        batch = TelemetryBatchIn.model_validate_json(data).messages
    except pydantic.ValidationError:
        try:
            batch = [TelemetryIn.model_validate_json(data)]
        except pydantic.ValidationError:
            return  # 400 with the errors
    for reading in batch:
        fuzz_processor(http_envelope(reading, NOW).model_dump_json().encode())


# What the structure-aware mutator puts into a JSON document: the values and keys that broke a
# parser before, wrong types, and the project's own ids and topics (so that mutated records
# still reach the decoders rather than all stopping at "unknown device").
HOSTILE_TOPICS = [
    *(f"sensors/{d}" for d in DEVICES),
    *(f"trucks/{d}/telemetry" for d in DEVICES),
    *(f"http/{d}" for d in DEVICES),
    *(f"cmnd/{d}/m/J1/{c}" for d in DEVICES for c in ("door-sensors", "rs485-sensors")),
    "sensors/a/b", "sensors/s1\n", "cmnd/f2-000000000000/m/J1/x",
]  # fmt: skip
HOSTILE_VALUES: list[Any] = [
    None, True, False, 0, -1, 1.5, 2**53 + 1, 2**64, 10**400, 1e308, -1e308,
    float("nan"), float("inf"), "", "\x00", "a\x00b", "x" * 300, "x" * 5000, "\n", "\ud800",
    "FF9C", "0x1f", "-FFF", " 1f ", "1_2f", "\u0661\u0662\u0663\u0664", "ZZZZ",
    "2027-01-15T08:00:00Z", "2027-01-15T08:00:00", "9999-12-31T23:59:59-23:59", "yesterday",
    [], {}, [1, "a"], {"k": None}, {"temperature": 1.0},
    "mqtt", "http", "json", "text", "base64",
    *DEVICES, *HOSTILE_TOPICS,
]  # fmt: skip
HOSTILE_KEYS = [
    "", "\x00", "t\x00", "t" * 129, "timestamp", "_truth", "\n", "temperature", "rpm",
    "door-sensor-1", "qr-reader-1", "humidity", "message_id", "device_id", "payload", "fleet",
]  # fmt: skip


def _nodes(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every value in a JSON document (the root is ``()``)."""
    found = [path]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _nodes(value, (*path, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            found += _nodes(value, (*path, index))
    return found


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return doc


def mutate_json(
    data: bytes, max_size: int, seed: int, fallback: Callable[[bytes, int], bytes]
) -> bytes:
    """libFuzzer custom mutator: a JSON document gets one of its values, keys or entries
    replaced by a hostile one (the JSON parser is compiled, so coverage alone would teach the
    fuzzer little about JSON); other inputs, and one mutation in five, go to ``fallback``
    (libFuzzer's own byte mutations). A bridge input's first line (the topic) is kept."""
    rng = random.Random(seed)
    prefix, body = b"", data
    if data.count(b"\n") and not data.lstrip().startswith((b"{", b"[")):
        head, _, body = data.partition(b"\n")
        prefix = (rng.choice(HOSTILE_TOPICS).encode() if rng.random() < 0.1 else head) + b"\n"
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return fallback(data, max_size)
    if rng.random() < 0.2:
        return fallback(data, max_size)
    path = rng.choice(_nodes(doc))
    target = doc
    for part in path:
        target = target[part]
    choice = rng.random()
    if isinstance(target, dict) and target and choice < 0.5:
        key = rng.choice(list(target))
        value = target.pop(key)
        if choice < 0.4:  # renamed (else: dropped)
            target[rng.choice(HOSTILE_KEYS)] = value
    elif isinstance(target, dict) and choice < 0.7:
        target[rng.choice(HOSTILE_KEYS)] = rng.choice(HOSTILE_VALUES)
    else:
        doc = _set(doc, path, rng.choice(HOSTILE_VALUES))
    out = prefix + json.dumps(doc, ensure_ascii=rng.random() < 0.5).encode(errors="surrogatepass")
    return out if len(out) <= max_size else fallback(data, max_size)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "processor": fuzz_processor,
    "bridge": fuzz_bridge,
    "http": fuzz_http,
    "sink": fuzz_sink,
}
