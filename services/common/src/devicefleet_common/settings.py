"""Settings building blocks shared by every service.

Each service declares one ``Settings(BaseSettings)`` with its own env prefix (``SINK_``,
``INGEST_``...) and mixes in the blocks it needs. Defaults point at the local devstack
(``devstack/ports.env``), so ``make up`` needs no configuration at all. A TOML file named by
``<PREFIX>CONFIG_FILE`` is read as well; environment variables win over it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class ObservabilitySettings(BaseModel):
    log_level: LogLevel = Field("INFO", description="DEBUG logs one line per message")
    environment: str = Field("development", description="Added to every log line")
    metrics_host: str = Field("127.0.0.1", description="Address /metrics binds to; 0.0.0.0 in pods")
    # Empty: export nothing, but trace context is still created and propagated so that
    # logs carry trace ids.
    otlp_endpoint: str = Field(
        "",
        description="OTLP/HTTP traces endpoint, e.g. http://127.0.0.1:4318/v1/traces; "
        "empty = no export",
    )


class KafkaSettings(BaseModel):
    kafka_bootstrap_servers: str = Field("127.0.0.1:19092", description="Kafka bootstrap list")
    raw_topic: str = Field("raw_iot_data", description="Envelopes from ingest and the bridge")
    decoded_topic: str = Field("decoded_iot_data", description="Decoded, enriched records")
    dead_letter_topic: str = Field("iot_dead_letter", description="Records that cannot be used")
    # TLS to the brokers (docs/security.md); devstack: TLS 127.0.0.1:19094, mutual TLS :19095.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL"] = Field(
        "PLAINTEXT",
        description="PLAINTEXT or SSL (TLS; on by itself when kafka_ssl_ca_file is set)",
    )
    kafka_ssl_ca_file: Path | None = Field(
        None, description="CA certificate(s) that signed the brokers' certificates (PEM)"
    )
    # Mutual TLS: the client's certificate and key (e.g. a Strimzi KafkaUser's user.crt and
    # user.key), for brokers that authenticate clients by certificate.
    kafka_ssl_cert_file: Path | None = Field(
        None, description="Client certificate (PEM) for mutual TLS; needs kafka_ssl_key_file"
    )
    kafka_ssl_key_file: Path | None = Field(
        None, description="Client private key (PEM, unencrypted) for mutual TLS"
    )

    @model_validator(mode="after")
    def _client_cert_needs_its_key(self) -> Self:
        if (self.kafka_ssl_cert_file is None) != (self.kafka_ssl_key_file is None):
            raise ValueError("kafka_ssl_cert_file and kafka_ssl_key_file go together (mutual TLS)")
        return self

    def kafka_security_config(self) -> dict[str, str]:
        """librdkafka settings for TLS (none for PLAINTEXT): the protocol, the CA and, for
        mutual TLS, the client's certificate; librdkafka verifies the broker's certificate
        and host name."""
        config: dict[str, str] = {}
        tls_files = (self.kafka_ssl_ca_file, self.kafka_ssl_cert_file)
        if self.kafka_security_protocol == "SSL" or any(f is not None for f in tls_files):
            config["security.protocol"] = "ssl"
            if self.kafka_ssl_ca_file is not None:
                config["ssl.ca.location"] = str(self.kafka_ssl_ca_file)
            if self.kafka_ssl_cert_file is not None and self.kafka_ssl_key_file is not None:
                config["ssl.certificate.location"] = str(self.kafka_ssl_cert_file)
                config["ssl.key.location"] = str(self.kafka_ssl_key_file)
        return config


class DatabaseSettings(BaseModel):
    database_url: str = Field(
        "postgresql://devicefleet:devicefleet@127.0.0.1:15432/devicefleet",
        description="libpq URL; pass credentials from a Secret in production",
    )


class MqttSettings(BaseModel):
    mqtt_host: str = Field("127.0.0.1", description="MQTT broker host")
    mqtt_port: int = Field(11883, description="MQTT broker port")
    mqtt_keepalive: int = Field(30, description="MQTT keepalive, seconds")
    # Authentication and TLS (docs/security.md); devicefleet_common.mqtt applies them.
    mqtt_username: str = Field("", description="MQTT username; empty = connect anonymously")
    mqtt_password: SecretStr | None = Field(
        None, description="MQTT password (from a Secret; never logged)"
    )
    mqtt_tls: bool = Field(
        False, description="TLS to the broker (on by itself when mqtt_tls_ca_file is set)"
    )
    mqtt_tls_ca_file: Path | None = Field(
        None, description="CA bundle the broker's cert is checked against; unset = system CAs"
    )
    mqtt_tls_cert_file: Path | None = Field(None, description="Client cert (mutual TLS)")
    mqtt_tls_key_file: Path | None = Field(None, description="Client key (mutual TLS)")


class ServiceSettings(BaseSettings):
    """Base for service settings: env vars with a prefix, then an optional TOML file."""

    model_config = SettingsConfigDict(extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        prefix = str(settings_cls.model_config.get("env_prefix", ""))
        config_file = os.environ.get(f"{prefix}CONFIG_FILE")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config_file:
            if not Path(config_file).is_file():
                raise FileNotFoundError(f"{prefix}CONFIG_FILE={config_file} does not exist")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        sources.append(file_secret_settings)
        return tuple(sources)


def redacted(settings: BaseModel) -> dict[str, Any]:
    """Settings as a dict safe to log: credentials in URLs and secret-like fields are masked."""
    out: dict[str, Any] = {}
    for key, value in settings.model_dump().items():
        if any(word in key for word in ("password", "token", "secret")):
            out[key] = "***"
        elif isinstance(value, str) and "://" in value and "@" in value:
            scheme, rest = value.split("://", 1)
            out[key] = f"{scheme}://***@{rest.split('@', 1)[1]}"
        else:
            out[key] = value
    return out
