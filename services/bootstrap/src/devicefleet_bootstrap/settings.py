from __future__ import annotations

from devicefleet_common.settings import (
    DatabaseSettings,
    KafkaSettings,
    ObservabilitySettings,
    ServiceSettings,
)
from pydantic_settings import SettingsConfigDict


class Settings(ServiceSettings, KafkaSettings, DatabaseSettings, ObservabilitySettings):
    model_config = SettingsConfigDict(env_prefix="BOOTSTRAP_", extra="ignore")

    topic_partitions: int = 6
    topic_replication_factor: int = 1
    # How long to wait for Kafka and PostgreSQL to answer before giving up.
    wait_timeout: float = 60.0
