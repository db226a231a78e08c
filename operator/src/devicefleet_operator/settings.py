"""Operator settings (``OPERATOR_*``): what every simulator pod gets unless its fleet says
otherwise, and how often fleets are observed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from devicefleet_common.settings import ObservabilitySettings, ServiceSettings


class Settings(ServiceSettings, ObservabilitySettings):
    model_config = SettingsConfigDict(env_prefix="OPERATOR_", extra="ignore")

    simulator_image: str = Field(
        "devicefleet/simulator:0.1.0", description="Image of simulator pods"
    )
    mqtt_host: str = Field("mosquitto", description="MQTT broker host simulators publish to")
    mqtt_port: int = Field(1883, description="MQTT broker port")
    ingest_url: str = Field("http://ingest:8080", description="Ingest base URL for http fleets")
    # Where simulator pods may run, e.g. onto kwok nodes in the local stack.
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="nodeSelector of simulator pods (JSON)"
    )
    tolerations: list[dict[str, Any]] = Field(
        default_factory=list, description="Tolerations of simulator pods (JSON list)"
    )
    status_interval: float = Field(
        3.0, gt=0, description="Seconds between two observations of a fleet's pods"
    )
    status_timeout: float = Field(2.0, gt=0, description="Timeout of one pod /status request")
    status_concurrency: int = Field(64, ge=1, description="Pods polled at once")
    metrics_port: int = Field(18085, description="Port of /metrics")
    liveness_port: int = Field(18086, description="Port of kopf's /healthz liveness endpoint")
    namespaces: list[str] = Field(
        default_factory=list, description="Namespaces to watch (JSON list); empty = all"
    )
    standalone: bool = Field(False, description="Run without peering (one operator only)")
    database_url: str = Field(
        "",
        description="Device registry (libpq URL) each fleet's devices are added to; "
        "empty = registered elsewhere",
    )
    health_stale_after: float = Field(
        300.0, gt=0, description="A device's health prediction older than this counts as unknown"
    )
    # Per-fleet credentials (devicefleet_common.credentials): each key is a file of a Secret
    # mounted into the operator only. Unset = fleets get no credentials (an open broker/ingest).
    ingest_token_key_file: Path | None = Field(
        None, description="Key signing fleets' ingest bearer tokens (shared with ingest)"
    )
    mqtt_password_key_file: Path | None = Field(
        None, description="Key deriving fleets' MQTT passwords (the operator's alone)"
    )
