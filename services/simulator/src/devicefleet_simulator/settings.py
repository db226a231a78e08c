"""Simulator settings: ``SIMULATOR_*`` environment variables, then the TOML file named by
``SIMULATOR_CONFIG_FILE`` (flat keys, e.g. ``device_count = 500``)."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from devicefleet_common.schemas import Profile
from devicefleet_common.settings import MqttSettings, ObservabilitySettings, ServiceSettings

Rate = Annotated[float, Field(ge=0.0, le=1.0)]
Transport = Literal["mqtt", "http"]


class Settings(ServiceSettings, MqttSettings, ObservabilitySettings):
    model_config = SettingsConfigDict(env_prefix="SIMULATOR_", extra="ignore")

    # Which devices: pod k of a fleet simulates device_id(profile, fleet, start .. start+count-1).
    fleet: str = Field(
        "demo",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="Fleet name; part of device ids",
    )
    profile: Profile = Field("generic", description="Device type: truck, f2 or generic")
    device_count: int = Field(10, ge=1, description="Devices this process simulates")
    device_start_index: int = Field(
        0, ge=0, description="Index of the first device (pod k: k * devicesPerPod)"
    )
    publish_interval: float = Field(1.0, gt=0.0, description="Seconds between readings per device")

    transport: Transport = Field("mqtt", description="mqtt (QoS 1, MQTT v5) or http")
    # Edge mode (seed 000): the pod is the trucks' gateway; it computes each truck's health
    # features and ships them with the reading, so the backend predicts from what the edge saw.
    edge: bool = Field(False, description="Edge gateway: attach health features (trucks only)")
    ground_truth: bool = Field(
        False, description="Test mode: attach each reading's true health state as _truth (trucks)"
    )
    http_batch_max: int = Field(
        200, ge=1, le=1000, description="Readings per POST /ingest/batch in edge mode (http)"
    )
    http_batch_linger: float = Field(
        0.2, ge=0.0, description="Seconds an edge gateway gathers readings before a POST (http)"
    )
    ingest_url: str = Field("http://127.0.0.1:18080", description="Ingest base URL (http)")
    # The fleet's token from its credentials Secret (the operator sets it by secretKeyRef).
    ingest_token: SecretStr | None = Field(
        None, description="Bearer token sent to ingest (http); unset = none"
    )

    # Fault injection (seed 002 defaults).
    drop_rate: Rate = Field(0.15, description="Share of readings never sent (counted)")
    jitter_rate: Rate = Field(0.20, description="Share of readings delayed before sending")
    max_jitter: float = Field(2.0, ge=0.0, description="Longest jitter delay, seconds")
    duplicate_rate: Rate = Field(0.10, description="Share of readings sent twice")
    malformed_rate: Rate = Field(0.0, description="Share of readings sent malformed")

    # Resilience: retry wraps the breaker, every attempt counts towards it.
    retry_max_attempts: int = Field(5, ge=1, description="Attempts per send (429/503/timeouts)")
    retry_base: float = Field(1.0, ge=0.0, description="First backoff, seconds (doubles, + jitter)")
    retry_max: float = Field(30.0, ge=0.0, description="Longest backoff, seconds")
    breaker_fail_max: int = Field(
        5, ge=1, description="Failed attempts in a row that open the breaker"
    )
    breaker_reset_timeout: float = Field(
        60.0, gt=0.0, description="Seconds open before a half-open probe"
    )
    buffer_size: int = Field(10000, ge=0, description="Readings kept while the breaker is open")
    drain_batch: int = Field(
        100, ge=1, description="Buffered readings sent at once once the breaker has closed"
    )
    request_timeout: float = Field(
        5.0, gt=0.0, description="Seconds to wait for an HTTP answer or a PUBACK"
    )

    status_host: str = Field("127.0.0.1", description="Address of /status, /health, /metrics")
    status_port: int = Field(
        18090, ge=0, le=65535, description="Port of /status, /health, /metrics"
    )

    # A new boot epoch restarts every device's sequence at 0, so ids never collide across runs.
    boot_epoch: int = Field(
        default_factory=lambda: int(time.time()),
        ge=0,
        description="Part of message ids; start time",
    )
    seed: int | None = Field(None, description="Random seed, for reproducible runs")
    max_messages_per_device: int | None = Field(
        None, ge=0, description="Stop after this many readings per device"
    )
    ledger_path: str | None = Field(None, description="File listing every acknowledged message id")
    # Set in Kubernetes from the StatefulSet pod index; the slice of the fleet then follows
    # from it, so a pod keeps its devices across restarts and rescales.
    pod_index: int | None = Field(
        None, ge=0, description="StatefulSet pod index; sets device_start_index = index * count"
    )
    fleet_devices: int | None = Field(
        None, ge=1, description="Devices in the whole fleet; the last pod simulates the rest"
    )
    shutdown_timeout: float = Field(
        10.0, ge=0.0, description="Seconds to flush the buffer on SIGTERM"
    )

    @model_validator(mode="after")
    def _truck_only_features(self) -> Settings:
        for name, on in (("edge", self.edge), ("ground_truth", self.ground_truth)):
            if on and self.profile != "truck":
                raise ValueError(f"{name} needs profile truck (health features are truck-only)")
        return self

    @model_validator(mode="after")
    def _slice_of_fleet(self) -> Settings:
        if self.pod_index is not None:
            per_pod = self.device_count
            self.device_start_index = self.pod_index * per_pod
            if self.fleet_devices is not None:
                self.device_count = min(per_pod, self.fleet_devices - self.device_start_index)
                if self.device_count < 1:
                    raise ValueError(
                        f"pod {self.pod_index} has no devices: the fleet has {self.fleet_devices}"
                        f" devices at {per_pod} per pod"
                    )
        return self
