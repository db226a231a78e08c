"""P1: ingest accepted events/s vs a bare Starlette JSON endpoint under uvicorn.

Both servers run one uvicorn process pinned to the subject CPU with the same server
settings; vegeta (pinned with Kafka to the other CPU) sends each the same kind of workload
at its top speed (no rate limit, a fixed number of connections): the single endpoint, then
the batch endpoint at two batch sizes. Ingest validates every reading, checks its message
id for duplicates and produces it to Kafka before answering; every event must be in the
topic afterwards. Starlette parses the JSON body and answers.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from bench.support import (
    KAFKA,
    LOAD_CPUS,
    SUBJECT_CPUS,
    Measure,
    Result,
    create_topic,
    delete_topics,
    pin_stack,
    pinned,
    run_id,
    tools,
    topic_count,
    watermark_consumer,
)
from bench.workload import Fleet, readings
from tests.support import ServiceProcess, free_port

KEY = "P1"
SINGLE_GOAL = 0.8
BATCH_GOAL = 50_000  # events/s
CONNECTIONS = 32


def _targets(path: Path, url: str, bodies: Iterator[bytes]) -> int:
    """vegeta's JSON target format, one request per line; returns the count."""
    count = 0
    with path.open("wb") as handle:
        for body in bodies:
            target = {
                "method": "POST",
                "url": url,
                "body": base64.b64encode(body).decode(),
                "header": {"Content-Type": ["application/json"]},
            }
            handle.write(orjson.dumps(target) + b"\n")
            count += 1
    return count


def _bodies(fleet: Fleet, events: int, batch: int) -> Iterator[bytes]:
    messages = (m.envelope() for m in readings(fleet, events))
    if batch == 1:
        yield from (orjson.dumps(m) for m in messages)
        return
    chunk: list[dict[str, Any]] = []
    for message in messages:
        chunk.append(message)
        if len(chunk) == batch:
            yield orjson.dumps({"messages": chunk})
            chunk = []
    if chunk:
        yield orjson.dumps({"messages": chunk})


def _connections(batch: int) -> int:
    """Keep what is in flight well under ingest's max_in_flight (10,000 events), where it
    would rightly answer 503."""
    return max(2, min(CONNECTIONS, 4_000 // batch))


def _attack(targets: Path, connections: int) -> dict[str, Any]:
    vegeta = tools()["vegeta"]
    attack = subprocess.Popen(
        pinned(
            [vegeta, "attack", "-lazy", "-format=json", f"-targets={targets}", "-rate=0",
             f"-workers={connections}", f"-max-workers={connections}", "-timeout=30s",
             "-keepalive=true"],
            LOAD_CPUS,
        ),
        stdout=subprocess.PIPE,
    )  # fmt: skip
    report = subprocess.run(
        [vegeta, "report", "-type=json"], stdin=attack.stdout, capture_output=True, check=True
    )
    attack.wait()
    result: dict[str, Any] = json.loads(report.stdout)
    return result


def _scenario(
    server: str, base_url: str, batch: int, events: int, scratch: Path, tag: str
) -> dict[str, Any]:
    """Attack ``base_url`` with ``events`` fresh readings in requests of ``batch``."""
    path = "/ingest" if batch == 1 else "/ingest/batch"
    targets = scratch / f"{server}-{batch}.jsonl"
    fleet = Fleet(f"bench-{tag}-{server}-{batch}", 100)
    requests = _targets(targets, base_url + path, _bodies(fleet, events, batch))
    report = _attack(targets, _connections(batch))
    codes = report.get("status_codes", {})
    # With -lazy, vegeta ends by reporting one "no targets to attack" result (code 0).
    errors = set(report.get("errors") or []) - {"no targets to attack"}
    succeeded = sum(n for code, n in codes.items() if code.startswith("2"))
    if errors or succeeded != requests:
        raise RuntimeError(f"{server}: {succeeded} of {requests} succeeded: {codes} {errors}")
    return {
        "requests": requests,
        "events_per_s": report["throughput"] * (events / requests),
        "p50_ms": report["latencies"]["50th"] / 1e6,
        "p99_ms": report["latencies"]["99th"] / 1e6,
    }


def _server(name: str, argv: list[str], env: dict[str, str], port: int, log_dir: Path) -> Any:
    return ServiceProcess(
        name, pinned(argv, SUBJECT_CPUS), env, log_dir, health_url=f"http://127.0.0.1:{port}/health"
    ).start()


def run(quick: bool, log_dir: Path) -> Result:
    single_events = 5_000 if quick else 20_000
    batch_events = 20_000 if quick else 200_000
    batches = [100] if quick else [100, 500]
    rid = run_id()
    topic = f"bench_raw_{rid}"
    create_topic(topic)
    tools()  # install before anything is timed
    figures: dict[tuple[str, int], dict[str, Any]] = {}
    expected_events = 0
    try:
        with pin_stack(LOAD_CPUS, "kafka"), tempfile.TemporaryDirectory() as scratch_dir:
            scratch = Path(scratch_dir)
            port = free_port()
            ingest = _server(
                f"ingest-{rid}",
                ["devicefleet-ingest"],
                {
                    "INGEST_PORT": str(port),
                    "INGEST_KAFKA_BOOTSTRAP_SERVERS": KAFKA,
                    "INGEST_RAW_TOPIC": topic,
                    "INGEST_LOG_LEVEL": "WARNING",
                },
                port,
                log_dir,
            )
            try:
                url = f"http://127.0.0.1:{port}"
                _scenario("ingest", url, 1, 1_000, scratch, f"{rid}w")  # warm-up
                expected_events += 1_000
                for batch in [1, *batches]:
                    events = single_events if batch == 1 else batch_events
                    figures[("ingest", batch)] = _scenario(
                        "ingest", url, batch, events, scratch, rid
                    )
                    expected_events += events
            finally:
                ingest.stop()
            port = free_port()
            starlette = _server(
                f"starlette-{rid}",
                [sys.executable, "-m", "bench.starlette_app", str(port)],
                {},
                port,
                log_dir,
            )
            try:
                url = f"http://127.0.0.1:{port}"
                _scenario("starlette", url, 1, 1_000, scratch, f"{rid}w")
                for batch in [1, *batches]:
                    events = single_events if batch == 1 else batch_events
                    figures[("starlette", batch)] = _scenario(
                        "starlette", url, batch, events, scratch, rid
                    )
            finally:
                starlette.stop()
        watermarks = watermark_consumer()
        in_kafka = topic_count(watermarks, topic)
        watermarks.close()
        if in_kafka != expected_events:
            raise RuntimeError(f"{in_kafka} events in Kafka, {expected_events} accepted")
    finally:
        delete_topics(topic)
    details = [
        {
            "events per request": batch,
            "ingest events/s": round(figures[("ingest", batch)]["events_per_s"]),
            "Starlette events/s": round(figures[("starlette", batch)]["events_per_s"]),
            "ratio": round(
                figures[("ingest", batch)]["events_per_s"]
                / figures[("starlette", batch)]["events_per_s"],
                2,
            ),
            "ingest p50 ms": round(figures[("ingest", batch)]["p50_ms"], 1),
            "ingest p99 ms": round(figures[("ingest", batch)]["p99_ms"], 1),
        }
        for batch in [1, *batches]
    ]
    single = figures[("ingest", 1)]["events_per_s"]
    base = figures[("starlette", 1)]["events_per_s"]
    best_batch = max(figures[("ingest", b)]["events_per_s"] for b in batches)
    return Result(
        key=KEY,
        title="Ingest: accepted events/s vs bare Starlette",
        subject=Measure(
            "ingest, single endpoint (validate, dedupe, produce to Kafka)", single, "events/s"
        ),
        baselines=[Measure("Starlette endpoint parsing the same JSON", base, "events/s")],
        goal=f"≥ {SINGLE_GOAL}× Starlette single; batch ≥ {BATCH_GOAL:,} events/s",
        met=single / base >= SINGLE_GOAL and best_batch >= BATCH_GOAL,
        command="make bench ONLY=P1",
        setup=(
            f"vegeta, {CONNECTIONS} keep-alive connections ({_connections(500)} at batch 500, "
            f"so in-flight events stay under ingest's limit), no rate limit; {single_events:,} "
            f"single readings and {batch_events:,} batched ones per server, fresh message ids; "
            f"servers pinned to CPU {SUBJECT_CPUS}, vegeta and Kafka to CPU {LOAD_CPUS}; "
            f"every accepted event checked in Kafka afterwards"
        ),
        details=details,
        notes=[f"Batch endpoint, best: **{best_batch:,.0f} events/s** (goal {BATCH_GOAL:,})."],
    )
