"""P6: simulated devices per process at 1 msg/s each vs a raw paho publish loop.

The simulator (generic sensors over MQTT QoS 1, faults off) runs with more and more devices
at one reading per second each, against the benchmark's own Mosquitto. A step is sustained
when the acknowledged rate over the measuring window is at least 97 % of the devices; the
sweep stops at the first step that is not. The baseline is a paho loop publishing ready-made
payloads as fast as PUBACKs come back: the most one process can publish through paho at all.
Overhead compares CPU time per message, the simulator's (device models, message ids, trace
context, retry + breaker, ledgerless delivery) against the raw loop's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.support import (
    LOAD_CPUS,
    SUBJECT_CPUS,
    Measure,
    Result,
    counter_value,
    pinned,
    private_broker,
    run_id,
)
from tests.support import ServiceProcess, free_port, wait_for

KEY = "P6"
DEVICES_GOAL = 50_000
OVERHEAD_GOAL = 0.20
SUSTAINED = 0.97  # share of the devices' rate that must be acknowledged
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _step(devices: int, port: int, window: float, log_dir: Path, rid: str) -> dict[str, float]:
    status = free_port()
    url = f"http://127.0.0.1:{status}/metrics"
    sim = ServiceProcess(
        f"p6-sim-{devices}-{rid}",
        pinned(["devicefleet-simulator"], SUBJECT_CPUS),
        {
            "SIMULATOR_FLEET": f"bench-p6-{rid}",
            "SIMULATOR_PROFILE": "generic",
            "SIMULATOR_TRANSPORT": "mqtt",
            "SIMULATOR_MQTT_PORT": str(port),
            "SIMULATOR_DEVICE_COUNT": str(devices),
            "SIMULATOR_PUBLISH_INTERVAL": "1",
            "SIMULATOR_DROP_RATE": "0",
            "SIMULATOR_JITTER_RATE": "0",
            "SIMULATOR_DUPLICATE_RATE": "0",
            "SIMULATOR_STATUS_PORT": str(status),
            "SIMULATOR_LOG_LEVEL": "WARNING",
            "SIMULATOR_SEED": "6",
        },
        log_dir,
        health_url=f"http://127.0.0.1:{status}/health",
    ).start(120)
    assert sim.proc is not None
    try:

        def acknowledged() -> float:
            # A saturated event loop answers /metrics late, not never.
            return counter_value(url, "simulator_messages", {"outcome": "acknowledged"}, 30)

        # Devices start staggered over the first interval; give them a few to settle.
        wait_for(lambda: acknowledged() > 0, 60, message="the first acknowledged reading")
        time.sleep(3)
        acked0, cpu0, t0 = acknowledged(), cpu_seconds(sim.proc.pid), time.monotonic()
        time.sleep(window)
        acked1, cpu1, t1 = acknowledged(), cpu_seconds(sim.proc.pid), time.monotonic()
    finally:
        sim.stop(30)
    rate = (acked1 - acked0) / (t1 - t0)
    return {
        "devices": devices,
        "acknowledged_per_s": round(rate),
        "share_of_target": round(rate / devices, 3),
        "cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0)),
        "cpu_us_per_msg": round(1e6 * (cpu1 - cpu0) / max(1.0, acked1 - acked0), 1),
    }


def _raw_loop(port: int, count: int) -> dict[str, float]:
    out = subprocess.run(
        pinned([sys.executable, "-m", "bench.paho_pub", str(port), str(count)], SUBJECT_CPUS),
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "per_s": figures["count"] / figures["seconds"],
        "cpu_us_per_msg": 1e6 * figures["cpu_seconds"] / figures["count"],
    }


def run(quick: bool, log_dir: Path) -> Result:
    steps = [1_000, 4_000] if quick else [2_000, 5_000, 10_000, 15_000, 20_000, 30_000, 50_000]
    window = 8.0 if quick else 20.0
    rid = run_id()
    details: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as scratch, private_broker(Path(scratch), log_dir) as port:
        raw = _raw_loop(port, 20_000 if quick else 100_000)
        for devices in steps:
            row = _step(devices, port, window, log_dir, rid)
            details.append(row)
            print(f"bench: P6 {row}", flush=True)
            if row["share_of_target"] < SUSTAINED:
                break
    sustained = [r for r in details if r["share_of_target"] >= SUSTAINED]
    best = max(sustained, key=lambda r: r["devices"]) if sustained else details[0]
    best_devices = int(best["devices"]) if sustained else 0
    overhead = best["cpu_us_per_msg"] / raw["cpu_us_per_msg"] - 1
    return Result(
        key=KEY,
        title="Simulator: devices per process at 1 msg/s vs a raw paho publish loop",
        subject=Measure(
            "simulator, most devices sustained at 1 msg/s (acknowledged/s)",
            best["acknowledged_per_s"] if sustained else 0.0,
            "msgs/s",
        ),
        baselines=[
            Measure("raw paho publish loop, as fast as PUBACKs return", raw["per_s"], "msgs/s")
        ],
        goal=(
            f"≥ {DEVICES_GOAL:,} devices per process, CPU per message ≤ "
            f"{1 + OVERHEAD_GOAL:.1f}× the raw loop's"
        ),
        met=best_devices >= DEVICES_GOAL and overhead <= OVERHEAD_GOAL,
        command="make bench ONLY=P6",
        setup=(
            f"generic sensors over MQTT QoS 1 (v5), faults off, one reading per device per "
            f"second; steps of {', '.join(f'{s:,}' for s in steps)} devices, {window:.0f} s "
            f"measured after the devices settled; a step counts when ≥ {SUSTAINED:.0%} of the "
            f"readings are acknowledged. Simulator and raw loop pinned to CPU {SUBJECT_CPUS}, "
            f"the benchmark's own Mosquitto to CPU {LOAD_CPUS}"
        ),
        details=details,
        plot_columns=["devices", "acknowledged_per_s"],
        notes=[
            f"Most devices sustained in one process: {best_devices:,}; CPU per message "
            f"{best['cpu_us_per_msg']:.0f} µs vs the raw loop's {raw['cpu_us_per_msg']:.0f} µs "
            f"(overhead {overhead:+.0%})."
        ],
    )
