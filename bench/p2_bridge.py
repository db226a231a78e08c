"""P2: MQTT → Kafka bridge msgs/s vs a paho subscribe-only loop and vs the raw pipe
``mosquitto_sub | kcat -P``.

The benchmark starts its own Mosquitto (no persistence, no other clients), so no leftover
persistent session of the stack's broker queues the benchmark's messages. For each subject in
turn: it subscribes, then four ``mosquitto_pub -l`` processes publish the same generic-sensor
readings (QoS 1, four devices) as fast as the broker takes them.
The bridge and the pipe are timed by records in their Kafka topic, first to last; the paho
loop times itself. The bridge acknowledges each MQTT message only after Kafka acknowledged
its record; the pipe acknowledges on receipt, the paho loop does no work at all.
"""

from __future__ import annotations

import json
import random
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from bench.support import (
    KAFKA,
    LOAD_CPUS,
    SUBJECT_CPUS,
    Measure,
    Result,
    counter_value,
    create_topic,
    delete_topics,
    pin_stack,
    pinned,
    private_broker,
    rate_until,
    run_id,
    tools,
    topic_count,
    watermark_consumer,
)
from devicefleet_simulator.profiles import GenericSensor
from tests.support import ServiceProcess, free_port, wait_for

KEY = "P2"
PAHO_GOAL = 0.8
PIPE_GOAL = 1.0
PUBLISHERS = 4


def _payload_files(scratch: Path, count: int, tag: str) -> list[tuple[str, Path]]:
    """(topic, file of one JSON payload per line) per publisher; readings 1 s apart."""
    files = []
    start = datetime.now(UTC) - timedelta(seconds=count + 5)
    rng = random.Random(11)
    for index in range(PUBLISHERS):
        device = f"bench-{tag}-sensor-{index}"
        model = GenericSensor(device, rng)
        path = scratch / f"{device}.jsonl"
        with path.open("wb") as handle:
            for tick in range(count // PUBLISHERS):
                reading = model.tick(start + timedelta(seconds=tick))
                handle.write(orjson.dumps(reading.payload) + b"\n")
        files.append((f"sensors/{device}", path))
    return files


def _publish(port: int, files: list[tuple[str, Path]]) -> list[subprocess.Popen[bytes]]:
    """Start the publishers; the subject is measured while they run."""
    publisher = tools()["mosquitto_pub"]
    procs = []
    for topic, path in files:
        with path.open("rb") as stdin:
            procs.append(
                subprocess.Popen(
                    pinned([publisher, "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv5",
                            "-q", "1", "-t", topic, "-l"], LOAD_CPUS),
                    stdin=stdin,
                )
            )  # fmt: skip
    return procs


def _finish(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.wait(600) != 0:
            raise RuntimeError(f"mosquitto_pub exited with {proc.returncode}")


def _bridge(port: int, count: int, scratch: Path, log_dir: Path, rid: str) -> float:
    topic = f"bench_bridge_{rid}"
    create_topic(topic)
    metrics_port = free_port()
    bridge = ServiceProcess(
        f"bridge-{rid}",
        pinned(["devicefleet-bridge"], SUBJECT_CPUS),
        {
            "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": KAFKA,
            "BRIDGE_RAW_TOPIC": topic,
            "BRIDGE_MQTT_PORT": str(port),
            "BRIDGE_CLIENT_ID": f"bench-bridge-{rid}",
            "BRIDGE_SESSION_EXPIRY_SECONDS": "0",
            "BRIDGE_METRICS_PORT": str(metrics_port),
            "BRIDGE_LOG_LEVEL": "WARNING",
        },
        log_dir,
        health_url=f"http://127.0.0.1:{metrics_port}/metrics",
    ).start()
    watermarks = watermark_consumer()
    try:
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        wait_for(lambda: counter_value(url, "bridge_mqtt_subscribed") == 1, 30)
        time.sleep(1)  # the SUBACK follows the CONNACK
        files = _payload_files(scratch, count, f"{rid}b")
        publishers = _publish(port, files)
        rate = rate_until(lambda: topic_count(watermarks, topic), count, 600, alive=bridge.alive)
        _finish(publishers)
    finally:
        bridge.stop()
        watermarks.close()
        delete_topics(topic)
    return rate.per_second


def _paho(port: int, count: int, scratch: Path, rid: str) -> float:
    files = _payload_files(scratch, count, f"{rid}p")
    proc = subprocess.Popen(
        pinned([sys.executable, "-m", "bench.paho_sub", str(port), str(count)], SUBJECT_CPUS),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "subscribed":
        raise RuntimeError("paho subscriber did not subscribe")
    _finish(_publish(port, files))
    out, _ = proc.communicate(timeout=600)
    figures = json.loads(out)
    return float(figures["count"] / figures["seconds"])


def _pipe(port: int, count: int, scratch: Path, rid: str) -> float:
    topic = f"bench_pipe_{rid}"
    create_topic(topic)
    paths = tools()
    sub = shlex.join(
        [paths["mosquitto_sub"], "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv5",
         "-q", "1", "-t", "sensors/+", "-C", str(count), "-i", f"bench-pipe-{rid}"]
    )  # fmt: skip
    kcat = shlex.join([paths["kcat"], "-P", "-b", KAFKA, "-t", topic])
    pipe = subprocess.Popen(pinned(["bash", "-c", f"{sub} | {kcat}"], SUBJECT_CPUS))
    watermarks = watermark_consumer()
    try:
        time.sleep(1.5)  # mosquitto_sub has connected and subscribed
        publishers = _publish(port, _payload_files(scratch, count, f"{rid}k"))
        rate = rate_until(lambda: topic_count(watermarks, topic), count, 600, alive=lambda: True)
        _finish(publishers)
        pipe.wait(60)
    finally:
        if pipe.poll() is None:
            pipe.kill()
        watermarks.close()
        delete_topics(topic)
    return rate.per_second


def run(quick: bool, log_dir: Path) -> Result:
    count = 20_000 if quick else 100_000
    rid = run_id()
    tools()
    with (
        tempfile.TemporaryDirectory() as scratch_dir,
        pin_stack(LOAD_CPUS, "kafka"),
        private_broker(Path(scratch_dir), log_dir) as port,
    ):
        scratch = Path(scratch_dir)
        paho = _paho(port, count, scratch, rid)
        pipe = _pipe(port, count, scratch, rid)
        bridge = _bridge(port, count, scratch, log_dir, rid)
    return Result(
        key=KEY,
        title="MQTT → Kafka bridge: msgs/s vs paho-only and the raw pipe",
        subject=Measure("bridge (QoS 1, acknowledged after Kafka's ack)", bridge, "msgs/s"),
        baselines=[
            Measure("paho subscribe-only loop", paho, "msgs/s"),
            Measure("mosquitto_sub | kcat -P", pipe, "msgs/s"),
        ],
        goal=f"≥ {PAHO_GOAL}× paho-only and ≥ {PIPE_GOAL}× the pipe",
        met=bridge / paho >= PAHO_GOAL and bridge / pipe >= PIPE_GOAL,
        command="make bench ONLY=P2",
        setup=(
            f"{count:,} generic-sensor readings per subject from {PUBLISHERS} `mosquitto_pub -l` "
            f"publishers (QoS 1, MQTT v5) through the benchmark's own Mosquitto; subject pinned "
            f"to CPU {SUBJECT_CPUS}, Mosquitto, Kafka and the publishers to CPU {LOAD_CPUS}"
        ),
    )
