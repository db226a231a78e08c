from __future__ import annotations

import pytest
from pydantic import ValidationError

from devicefleet_common.devices import device_id, fleet_device_ids
from devicefleet_common.schemas import TelemetryIn, content_message_id, make_message_id
from devicefleet_common.settings import redacted
from devicefleet_common.topics import parse_topic
from devicefleet_sink.settings import Settings as SinkSettings


def test_device_ids_are_stable_and_topic_safe() -> None:
    assert device_id("f2", "demo", 3) == device_id("f2", "demo", 3)
    assert fleet_device_ids("truck", "demo", 2, 2) == ["truck-demo-00002", "truck-demo-00003"]
    f2 = device_id("f2", "demo", 0)
    info = parse_topic(f"cmnd/{f2}/access-control-mode/J1/door-sensors")
    assert info is not None
    assert (info.device_id, info.profile, info.component_type) == (f2, "f2", "door-sensors")


def test_topic_layouts() -> None:
    assert parse_topic("trucks/truck-a-00001/telemetry").profile == "truck"  # type: ignore[union-attr]
    assert parse_topic("sensors/sensor-a-00001").profile == "generic"  # type: ignore[union-attr]
    assert parse_topic("http/x").profile is None  # type: ignore[union-attr]
    assert parse_topic("cmnd/not-an-f2/x/J1/y") is None
    assert parse_topic("sensors/a/b") is None


def test_message_ids() -> None:
    assert make_message_id("d", 5, 9) == "d:5:9"
    a = content_message_id("d", "t", b"x")
    assert a == content_message_id("d", "t", b"x") != content_message_id("d", "t", b"y")


def test_telemetry_rejects_bad_device_ids_and_naive_timestamps() -> None:
    good = {
        "device_id": "d-1",
        "boot_epoch": 1,
        "sequence": 0,
        "timestamp": "2026-01-01T00:00:00Z",
        "payload": {},
    }
    assert TelemetryIn.model_validate(good).message_id == "d-1:1:0"
    for bad in (
        {"device_id": "a/b"},
        {"device_id": "a:b"},
        {"sequence": -1},
        {"timestamp": "2026-01-01T00:00:00"},
        {"extra": 1},
    ):
        with pytest.raises(ValidationError):
            TelemetryIn.model_validate(good | bad)


def test_settings_env_toml_and_redaction(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "sink.toml"  # type: ignore[operator]
    config.write_text("batch_size = 42\nbatch_timeout = 2.5\n")
    monkeypatch.setenv("SINK_CONFIG_FILE", str(config))
    monkeypatch.setenv("SINK_BATCH_TIMEOUT", "0.5")
    settings = SinkSettings()
    assert settings.batch_size == 42  # from TOML
    assert settings.batch_timeout == 0.5  # env wins over TOML
    assert "devicefleet:devicefleet" not in str(redacted(settings))
