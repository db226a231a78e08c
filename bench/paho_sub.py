"""P2's first baseline: a paho-mqtt subscribe-only loop (MQTT v5, QoS 1, the bridge's
subscriptions) that counts messages and does nothing with them. Prints one JSON line,
``{"count": N, "seconds": first-to-last}``, once it has received ``count``.

    python -m bench.paho_sub PORT COUNT
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from devicefleet_common.topics import SUBSCRIPTIONS


def main() -> None:
    port, target = int(sys.argv[1]), int(sys.argv[2])
    state = {"count": 0, "first": 0.0, "last": 0.0}
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-paho-{port}", protocol=mqtt.MQTTv5
    )

    def on_connect(client: mqtt.Client, *_: Any) -> None:
        client.subscribe([(topic, SubscribeOptions(qos=1)) for topic in SUBSCRIPTIONS])

    def on_subscribe(*_: Any) -> None:
        print("subscribed", flush=True)

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        state["count"] += 1
        if state["count"] == 1:
            state["first"] = now
        state["last"] = now
        if state["count"] >= target:
            client.disconnect()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_forever()
    print(json.dumps({"count": state["count"], "seconds": state["last"] - state["first"]}))


if __name__ == "__main__":
    main()
