"""MQTT → Kafka bridge (``devicefleet-bridge``)."""

from devicefleet_ingest.bridge.main import main

__all__ = ["main"]
