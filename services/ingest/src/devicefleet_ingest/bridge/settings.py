"""Bridge settings: ``BRIDGE_*`` environment variables, or TOML via ``BRIDGE_CONFIG_FILE``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from devicefleet_common.settings import (
    KafkaSettings,
    MqttSettings,
    ObservabilitySettings,
    ServiceSettings,
)


class BridgeSettings(ServiceSettings, KafkaSettings, MqttSettings, ObservabilitySettings):
    model_config = SettingsConfigDict(env_prefix="BRIDGE_", extra="ignore")

    # Fixed id + clean_start=False: the broker keeps the session (subscriptions and unacked
    # QoS 1 messages) across bridge restarts for session_expiry_seconds.
    client_id: str = Field(
        "devicefleet-bridge", description="MQTT client id; names the persistent session"
    )
    session_expiry_seconds: int = Field(
        86_400, ge=0, description="Broker keeps the session (and queued messages) this long"
    )
    metrics_port: int = Field(18081, description="Port of /metrics")
    receive_maximum: int = Field(1000, ge=1, le=65_535, description="MQTT v5 unacked window")
    shutdown_flush_seconds: float = Field(
        30.0, gt=0, description="Seconds to flush Kafka on SIGTERM"
    )
