from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from devicefleet_common.settings import (
    DatabaseSettings,
    KafkaSettings,
    ObservabilitySettings,
    ServiceSettings,
)


class Settings(ServiceSettings, KafkaSettings, DatabaseSettings, ObservabilitySettings):
    model_config = SettingsConfigDict(env_prefix="PROCESSOR_", extra="ignore")

    group_id: str = Field("devicefleet-processor", description="Kafka consumer group")
    metrics_port: int = Field(18082, description="Port of /metrics")
    batch_size: int = Field(500, ge=1, le=100_000, description="Messages per consume call")
    # Short: a consume call returns early only once batch_size messages arrived, so at low
    # rates this is the latency the processor adds (P5 holds p99 < 1 s end to end).
    poll_timeout: float = Field(0.1, gt=0, description="Seconds a consume call waits")
    registry_refresh_seconds: float = Field(30.0, gt=0, description="Full registry re-read")
    # A device missing from the cache is looked up again at most this often, so a device
    # registered a moment ago is found without waiting for the next full refresh.
    registry_miss_ttl_seconds: float = Field(
        2.0, ge=0, description="Re-check an unknown device at most this often"
    )
    max_future_skew_seconds: float = Field(3600.0, description="Later timestamps dead-letter")
    max_age_seconds: float = Field(30 * 86400.0, description="Older timestamps dead-letter")
    health_enabled: bool = Field(True, description="Predict each truck's health from its features")
    health_model_path: str | None = Field(
        None, description="Health model artifact (JSON); default: the one shipped in the package"
    )
    health_stale_after_seconds: float = Field(
        300.0, gt=0, description="A device's prediction older than this no longer counts"
    )
