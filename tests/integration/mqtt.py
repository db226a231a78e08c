"""A minimal MQTT v5 publisher for tests (QoS 1, waits for PUBACK)."""

from __future__ import annotations

import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def publish(port: int, topic: str, payload: bytes, message_id: str | None = None) -> None:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"test-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        props = Properties(PacketTypes.PUBLISH)
        if message_id is not None:
            props.UserProperty = ("message-id", message_id)
        info = client.publish(topic, payload, qos=1, properties=props)
        info.wait_for_publish(timeout=10)
        assert info.is_published(), f"no PUBACK for {topic}"
    finally:
        client.disconnect()
        client.loop_stop()
