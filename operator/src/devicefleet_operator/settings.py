"""Operator settings (``OPERATOR_*``): what every simulator pod gets unless its fleet says
otherwise, and how often fleets are observed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from devicefleet_common.settings import ObservabilitySettings, ServiceSettings


class Settings(ServiceSettings, ObservabilitySettings):
    model_config = SettingsConfigDict(env_prefix="OPERATOR_", extra="ignore")

    simulator_image: str = Field(
        "devicefleet/simulator:0.1.0", description="Image of simulator pods"
    )
    mqtt_host: str = Field("mosquitto", description="MQTT broker host simulators publish to")
    mqtt_port: int = Field(1883, description="MQTT broker port")
    simulator_mqtt_tls_ca_file: Path | None = Field(
        None,
        description="CA (PEM) of the broker's TLS listener, given to every fleet's pods (in "
        "its credentials Secret); set = simulators connect by TLS to mqtt_port",
    )
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
    # The broker's dynamic security admin (operator/broker.py): with it, the operator registers
    # each fleet in the broker (its client and a role allowing only its devices' topics) and
    # removes it when the fleet is deleted. Unset = the broker is managed elsewhere (or open).
    mqtt_admin_username: str = Field("", description="Broker admin (dynamic security plugin)")
    mqtt_admin_password_file: Path | None = Field(
        None, description="File holding the broker admin's password (a mounted Secret key)"
    )
    mqtt_admin_host: str = Field("", description="Broker the operator manages; empty = mqtt_host")
    mqtt_admin_port: int = Field(0, ge=0, description="Its port; 0 = mqtt_port")
    mqtt_admin_tls_ca_file: Path | None = Field(
        None, description="CA of the broker's TLS listener; set = the operator connects by TLS"
    )
    mqtt_admin_resync_interval: float = Field(
        300.0,
        gt=0,
        description="Seconds between checks that each fleet is still in the broker "
        "(a broker restarted without its state gets them back)",
    )

    @property
    def manages_broker(self) -> bool:
        return self.mqtt_admin_password_file is not None

    @model_validator(mode="after")
    def _broker_admin_needs_the_fleet_key(self) -> Settings:
        if self.manages_broker and not (self.mqtt_password_key_file and self.mqtt_admin_username):
            raise ValueError(
                "mqtt_admin_password_file needs mqtt_admin_username and mqtt_password_key_file "
                "(fleets' broker passwords are derived from that key)"
            )
        return self
