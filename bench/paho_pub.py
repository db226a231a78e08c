"""P6's baseline: a raw paho-mqtt publish loop (MQTT v5, QoS 1) that publishes ready-made
generic-sensor payloads as fast as the broker acknowledges them, with no devices, no models,
no faults, no retries, no breaker. Prints one JSON line, ``{"count": N, "seconds": s,
"cpu_seconds": c}``: first publish to last PUBACK, and the process's CPU time in between.

    python -m bench.paho_pub PORT COUNT
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devicefleet_simulator.profiles import GenericSensor

DEVICES = 100  # payloads cycle over these devices' readings
WINDOW = 100  # unacknowledged publishes at a time (the broker's max_inflight_messages)


def payloads(count: int) -> list[tuple[str, bytes]]:
    rng = random.Random(7)
    start = datetime.now(UTC) - timedelta(seconds=count)
    models = [GenericSensor(f"bench-raw-sensor-{i}", rng) for i in range(DEVICES)]
    out = []
    for tick in range(count):
        model = models[tick % DEVICES]
        reading = model.tick(start + timedelta(seconds=tick // DEVICES))
        out.append((reading.topic, orjson.dumps(reading.payload)))
    return out


def main() -> None:
    port, count = int(sys.argv[1]), int(sys.argv[2])
    messages = payloads(count)
    done = threading.Event()
    # The loop keeps the window full itself rather than queueing everything inside paho,
    # whose own queue stalled (PUBACKs stopped coming) beyond a few tens of thousands.
    window = threading.Semaphore(WINDOW)
    acked = 0

    def on_publish(*_: Any) -> None:
        nonlocal acked
        acked += 1
        window.release()
        if acked == count:
            done.set()

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-raw-pub-{port}", protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(WINDOW)
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    started, cpu_started = time.monotonic(), time.process_time()
    for topic, payload in messages:
        if not window.acquire(timeout=30):
            raise SystemExit(f"no PUBACK for 30 s after {acked} of {count}")
        client.publish(topic, payload, qos=1)
    if not done.wait(600):
        raise SystemExit(f"only {acked} of {count} acknowledged")
    seconds, cpu = time.monotonic() - started, time.process_time() - cpu_started
    client.disconnect()
    client.loop_stop()
    print(json.dumps({"count": count, "seconds": seconds, "cpu_seconds": cpu}))


if __name__ == "__main__":
    main()
