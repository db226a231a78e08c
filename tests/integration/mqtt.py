"""A minimal MQTT v5 publisher for tests (QoS 1, waits for PUBACK), and a way to delete a
gone client's persistent session."""

from __future__ import annotations

import threading
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devicefleet_common.mqtt import configure_client
from devicefleet_common.settings import MqttSettings


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


def forget_session(settings: MqttSettings, client_id: str, timeout: float = 10.0) -> None:
    """Delete the broker's persistent session of ``client_id`` (a bridge that is gone for
    good): connecting with clean start and a session expiry of 0 discards it. Left alone,
    the broker queues every later device message for it until the session expires (the
    test broker's persistence file once grew past 1 GB, and each autosave stalled it)."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    configure_client(client, settings)
    connected = threading.Event()
    client.on_connect = lambda *_args: connected.set()
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 0
    client.connect(settings.mqtt_host, settings.mqtt_port, clean_start=True, properties=properties)
    client.loop_start()
    try:
        assert connected.wait(timeout), f"could not connect as {client_id} to forget its session"
    finally:
        client.disconnect()
        client.loop_stop()
