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
    model_config = SettingsConfigDict(env_prefix="BOOTSTRAP_", extra="ignore")

    topic_partitions: int = Field(6, description="Partitions of each topic it creates")
    topic_replication_factor: int = Field(1, description="Replication factor of new topics")
    wait_timeout: float = Field(60.0, description="Seconds to wait for Kafka and PostgreSQL")
