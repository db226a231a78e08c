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
    model_config = SettingsConfigDict(env_prefix="SINK_", extra="ignore")

    group_id: str = Field("devicefleet-sink", description="Kafka consumer group")
    metrics_port: int = Field(18083, description="Port of /metrics")
    batch_size: int = Field(1000, ge=1, le=100_000, description="Records per database write")
    # At low rates every batch waits this long: it is the freshness floor of the data.
    batch_timeout: float = Field(
        0.25, gt=0, description="Seconds before a partial batch is written"
    )
    db_retry_max_seconds: float = Field(10.0, gt=0, description="Backoff cap while the DB is down")
