"""Simulator settings: ``SIMULATOR_*`` environment variables, then the TOML file named by
``SIMULATOR_CONFIG_FILE`` (flat keys, e.g. ``device_count = 500``)."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from devicefleet_common.schemas import Profile
from devicefleet_common.settings import MqttSettings, ObservabilitySettings, ServiceSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict

Rate = Annotated[float, Field(ge=0.0, le=1.0)]
Transport = Literal["mqtt", "http"]


class Settings(ServiceSettings, MqttSettings, ObservabilitySettings):
    model_config = SettingsConfigDict(env_prefix="SIMULATOR_", extra="ignore")

    # Which devices: pod k of a fleet simulates device_id(profile, fleet, start .. start+count-1).
    fleet: str = Field("demo", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    profile: Profile = "generic"
    device_count: int = Field(10, ge=1)
    device_start_index: int = Field(0, ge=0)
    publish_interval: float = Field(1.0, gt=0.0, description="Seconds between readings per device")

    transport: Transport = "mqtt"
    ingest_url: str = "http://127.0.0.1:18080"

    # Fault injection (seed 002 defaults).
    drop_rate: Rate = 0.15
    jitter_rate: Rate = 0.20
    max_jitter: float = Field(2.0, ge=0.0)
    duplicate_rate: Rate = 0.10
    malformed_rate: Rate = 0.0

    # Resilience: retry wraps the breaker, every attempt counts towards it.
    retry_max_attempts: int = Field(5, ge=1)
    retry_base: float = Field(1.0, ge=0.0)
    retry_max: float = Field(30.0, ge=0.0)
    breaker_fail_max: int = Field(5, ge=1)
    breaker_reset_timeout: float = Field(60.0, gt=0.0)
    buffer_size: int = Field(10000, ge=0)
    request_timeout: float = Field(5.0, gt=0.0)

    status_host: str = "127.0.0.1"
    status_port: int = Field(18090, ge=0, le=65535)

    # A new boot epoch restarts every device's sequence at 0, so ids never collide across runs.
    boot_epoch: int = Field(default_factory=lambda: int(time.time()), ge=0)
    seed: int | None = None
    max_messages_per_device: int | None = Field(None, ge=0)
    ledger_path: str | None = None
    shutdown_timeout: float = Field(10.0, ge=0.0)
