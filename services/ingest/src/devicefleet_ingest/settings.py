"""Ingest API settings: ``INGEST_*`` environment variables, or TOML via ``INGEST_CONFIG_FILE``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from devicefleet_common.settings import KafkaSettings, ObservabilitySettings, ServiceSettings


class IngestSettings(ServiceSettings, KafkaSettings, ObservabilitySettings):
    model_config = SettingsConfigDict(env_prefix="INGEST_", extra="ignore")

    host: str = Field("127.0.0.1", description="Listen address; 0.0.0.0 in pods")
    port: int = Field(18080, description="HTTP port (API, /health, /ready, /metrics)")
    overload_rate: float = Field(
        0.0, ge=0.0, le=1.0, description="Share of requests answered 503 on purpose (seed 002)"
    )
    retry_after_seconds: int = Field(1, ge=0, description="Retry-After sent with 503")
    max_body_bytes: int = Field(1024 * 1024, ge=1, description="Larger bodies get 413")
    idempotency_ttl_seconds: float = Field(
        300.0, gt=0, description="How long a message id is answered with 409"
    )
    idempotency_cache_size: int = Field(
        1_000_000, ge=1, description="Message ids remembered at most"
    )
    max_in_flight: int = Field(10_000, ge=1, description="Unacknowledged produces before 503")
    produce_timeout_seconds: float = Field(
        10.0, gt=0, description="Kafka acknowledgement wait before 503"
    )
    # /ready answers from a cached Kafka metadata check no older than this.
    ready_cache_seconds: float = Field(5.0, gt=0, description="/ready caches its Kafka check")
    ready_check_timeout_seconds: float = Field(
        2.0, gt=0, description="Kafka metadata timeout of /ready"
    )
    # Bearer tokens per fleet (api/auth.py): the key file is the operator's ingest-token key,
    # mounted from a Secret. Unset = no auth (local dev processes); the chart sets it.
    auth_token_key_file: Path | None = Field(
        None, description="Key that signs fleets' ingest tokens; set = bearer token required"
    )
