"""What the benchmarks share: the stack's addresses, the machine, CPU pinning, progress
measured from a Prometheus counter or a Kafka topic, and the result type."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from prometheus_client.parser import text_string_to_metric_families

from tests.support import DATABASE_URL, KAFKA, MQTT_PORT, REPO, free_port, port_open, wait_for

__all__ = ["DATABASE_URL", "KAFKA", "MQTT_PORT"]  # the stack's addresses, for the benchmarks
CACHE = Path(os.environ.get("DEVSTACK_CACHE", Path.home() / ".cache" / "devicefleet"))
STATE = Path(os.environ.get("DEVSTACK_STATE", Path.home() / ".local" / "state" / "devicefleet"))
RESULTS = REPO / "docs" / "benchmarks"


@dataclass
class Measure:
    """One figure: ``value`` in ``unit`` (higher is better unless ``lower_is_better``)."""

    label: str
    value: float
    unit: str
    lower_is_better: bool = False


@dataclass
class Result:
    """One benchmark: the subject against its baseline(s), plus the goal it is held to."""

    key: str  # P1 ... P8
    title: str
    subject: Measure
    baselines: list[Measure]
    goal: str
    met: bool
    command: str
    setup: str  # workload, pinning, sizes: what a reader needs to judge the figure
    details: list[dict[str, Any]] = field(default_factory=list)  # rows of the detail table
    plots: list[str] = field(default_factory=list)  # PNG files under docs/benchmarks
    notes: list[str] = field(default_factory=list)
    # The detail plot: x column first, then the y columns (default: the table's first three),
    # and the y axis' unit (default: the subject's).
    plot_columns: list[str] = field(default_factory=list)
    plot_unit: str = ""

    def ratio(self, baseline: int = 0) -> float:
        """How the subject compares with a baseline, > 1 always meaning better: for a time
        (lower is better) it is baseline ÷ subject."""
        base = self.baselines[baseline].value
        if self.subject.lower_is_better:
            return base / self.subject.value if self.subject.value else 0.0
        return self.subject.value / base if base else 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        data = dict(data)
        data["subject"] = Measure(**data["subject"])
        data["baselines"] = [Measure(**b) for b in data["baselines"]]
        return cls(**data)


def run_id() -> str:
    return uuid.uuid4().hex[:8]


# --- the machine ----------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{mem_kib / 1024 / 1024:.0f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": git_commit(),
    }


def git_commit() -> str:
    out = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


# --- CPU pinning ----------------------------------------------------------------------------

CPUS = os.cpu_count() or 1
# With two or more CPUs the subject gets CPU 0 and the load generator / broker the rest, so
# the two never steal each other's time slices; on one CPU nothing is pinned.
SUBJECT_CPUS = "0" if CPUS > 1 else ""
LOAD_CPUS = ("1" if CPUS == 2 else f"1-{CPUS - 1}") if CPUS > 1 else ""


def pinned(argv: list[str], cpus: str) -> list[str]:
    return ["taskset", "-c", cpus, *argv] if cpus and shutil.which("taskset") else argv


@contextmanager
def pin_pid(pid: int, cpus: str) -> Iterator[None]:
    """Pin a running process (a broker of the stack) for the duration; restore after."""
    if not cpus or not shutil.which("taskset"):
        yield
        return
    before = (
        subprocess.run(
            ["taskset", "-a", "-p", "-c", str(pid)], capture_output=True, text=True, check=True
        )
        .stdout.rsplit(":", 1)[1]
        .strip()
    )
    subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], capture_output=True, check=True)
    try:
        yield
    finally:
        subprocess.run(
            ["taskset", "-a", "-p", "-c", before, str(pid)], capture_output=True, check=False
        )


@contextmanager
def pin_stack(cpus: str, *components: str) -> Iterator[None]:
    """Pin the stack's brokers / database (by devstack's pid files) for the duration."""
    with contextlib.ExitStack() as stack:
        for component in components:
            pid = stack_pid(component)
            if pid is not None:
                stack.enter_context(pin_pid(pid, cpus))
        yield


def stack_pid(component: str) -> int | None:
    """The pid devstack recorded for a component of the stack (kafka, mosquitto, postgres)."""
    path = STATE / "pids" / f"{component}.pid"
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# --- a broker of the benchmark's own ------------------------------------------------------


@contextlib.contextmanager
def private_broker(scratch: Path, log_dir: Path) -> Iterator[int]:
    """A Mosquitto of the benchmark's own on a free loopback port, pinned with the load: no
    persistence and no other clients, so no leftover persistent session of the stack's broker
    queues (and slows down) the benchmark's messages."""
    port = free_port()
    conf = scratch / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_inflight_messages 100\nmax_queued_messages 1000000\nlog_type error\n"
        "user root\n"
    )
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with (log_dir / "bench-mosquitto.log").open("ab") as log:
        broker = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=log)
    try:
        wait_for(lambda: port_open("127.0.0.1", port), 15, message="the benchmark's Mosquitto")
        with pin_pid(broker.pid, LOAD_CPUS):
            yield port
    finally:
        broker.terminate()
        broker.wait(30)


# --- measuring progress ---------------------------------------------------------------------


def counter_value(
    url: str, name: str, labels: dict[str, str] | None = None, timeout: float = 2.0
) -> float:
    """Sum of a Prometheus counter's samples (``name`` without ``_total``) on ``url``."""
    text = httpx.get(url, timeout=timeout).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            if labels and any(sample.labels.get(k) != v for k, v in labels.items()):
                continue
            total += sample.value
    return total


@dataclass(frozen=True)
class Rate:
    count: float
    seconds: float

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


def rate_until(
    progress: Callable[[], float],
    target: float,
    timeout: float,
    interval: float = 0.05,
    alive: Callable[[], bool] | None = None,
) -> Rate:
    """Throughput of something that counts up to ``target``: from the first observed
    progress to the moment it reaches the target (start-up time is not throughput)."""
    deadline = time.monotonic() + timeout
    first: tuple[float, float] | None = None
    while time.monotonic() < deadline:
        value = progress()
        now = time.monotonic()
        if first is None and value > 0:
            first = (now, value)
        if value >= target:
            assert first is not None
            return Rate(value - first[1], now - first[0])
        if alive is not None and not alive():
            raise RuntimeError(f"the subject exited at {value:.0f} of {target:.0f}")
        time.sleep(interval)
    raise TimeoutError(f"reached {progress():.0f} of {target:.0f} in {timeout:.0f} s")


# --- Kafka ----------------------------------------------------------------------------------


def create_topic(name: str, partitions: int = 3) -> None:
    admin = AdminClient({"bootstrap.servers": KAFKA})
    futures = admin.create_topics([NewTopic(name, partitions, 1)])
    futures[name].result(30)
    # Metadata reaches every client a moment later.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        topic = admin.list_topics(name, timeout=5).topics.get(name)
        if topic is not None and topic.error is None and len(topic.partitions) == partitions:
            return
        time.sleep(0.1)


def fill_topic(topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """Produce (key, value) records and wait until the broker has them all."""
    producer = Producer({"bootstrap.servers": KAFKA, "linger.ms": 20, "acks": "all"})
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.1)
    if producer.flush(60) != 0:
        raise RuntimeError("records left unflushed")


def delete_topics(*names: str) -> None:
    AdminClient({"bootstrap.servers": KAFKA}).delete_topics(list(names))


def topic_count(consumer: Consumer, topic: str) -> int:
    """Records in a topic: the sum of its partitions' high watermarks (nothing is deleted)."""
    meta = consumer.list_topics(topic, timeout=5).topics[topic]
    total = 0
    for partition in meta.partitions:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=5)
        total += high
    return total


def watermark_consumer() -> Consumer:
    return Consumer({"bootstrap.servers": KAFKA, "group.id": f"bench-watermarks-{run_id()}"})


# --- tools ----------------------------------------------------------------------------------


@functools.cache
def tools() -> dict[str, str]:
    """Paths of the load generators and raw baselines (installed by bench/tools.sh)."""
    out = subprocess.run(
        ["bash", str(REPO / "bench" / "tools.sh")], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"bench/tools.sh failed:\n{out.stderr[-3000:]}")
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
