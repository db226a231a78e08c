from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from devicefleet_common.devices import device_id
from devicefleet_simulator.ledger import read_ledger
from devicefleet_simulator.settings import Settings
from devicefleet_simulator.simulator import Simulator
from devicefleet_simulator.status import create_status_app

from .conftest import FakeTransport, fast_settings

NOW = datetime(2025, 1, 1, tzinfo=UTC)

STATUS_KEYS = {
    "fleet", "profile", "transport", "pod", "deviceStart", "devices", "bootEpoch", "ready",
    "circuitBreaker", "messages",
}  # fmt: skip
BREAKER_KEYS = {"state", "failCounter", "lastTransitionTime", "transitions", "openedTotal"}
MESSAGE_KEYS = {
    "generated", "acknowledged", "duplicatesAcknowledged", "rejected", "failedAttempts",
    "retries", "dropped", "duplicated", "malformed", "buffered", "bufferOverflow", "inFlight",
}  # fmt: skip


def test_settings_from_env_and_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "sim.toml"
    config.write_text('profile = "f2"\ndevice_count = 500\ndrop_rate = 0.5\n')
    monkeypatch.setenv("SIMULATOR_CONFIG_FILE", str(config))
    monkeypatch.setenv("SIMULATOR_DEVICE_COUNT", "7")  # env wins over the file
    settings = Settings()
    assert (settings.profile, settings.device_count, settings.drop_rate) == ("f2", 7, 0.5)
    assert settings.transport == "mqtt"
    assert settings.duplicate_rate == 0.10
    assert settings.boot_epoch > 1_700_000_000


@pytest.mark.parametrize("field", ["drop_rate", "jitter_rate", "duplicate_rate", "malformed_rate"])
def test_rates_are_validated(field: str) -> None:
    with pytest.raises(ValidationError):
        Settings(**{field: 1.5})
    with pytest.raises(ValidationError):
        Settings(**{field: -0.1})


def test_devices_follow_the_pod_offset_and_sequences_start_at_zero() -> None:
    sim = Simulator(fast_settings(profile="truck", device_start_index=20, device_count=3),
                    FakeTransport())  # fmt: skip
    assert [d.device_id for d in sim.devices] == [device_id("truck", "t", i) for i in (20, 21, 22)]

    async def tick_twice() -> list[str]:
        ids = []
        for _ in range(2):
            for device in sim.devices:
                message = sim.generate(device, NOW)
                assert message is not None
                ids.append(message.message_id)
        await sim.delivery.wait_idle()
        return ids

    ids = asyncio.run(tick_twice())
    assert ids[0] == "truck-t-00020:1700000000:0"
    assert ids[3] == "truck-t-00020:1700000000:1"
    assert len(set(ids)) == 6


async def test_status_contract_shape() -> None:
    sim = Simulator(fast_settings(), FakeTransport())
    app = create_status_app(sim.status)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        health = await c.get("/health")
        body = (await c.get("/status")).json()
        metrics = await c.get("/metrics")
    assert health.status_code == 200
    assert set(body) == STATUS_KEYS
    assert set(body["circuitBreaker"]) == BREAKER_KEYS
    assert set(body["messages"]) == MESSAGE_KEYS
    assert body["circuitBreaker"] == {
        "state": "closed", "failCounter": 0, "lastTransitionTime": None, "transitions": 0,
        "openedTotal": 0,
    }  # fmt: skip
    assert (body["fleet"], body["profile"], body["transport"]) == ("t", "generic", "mqtt")
    assert (body["deviceStart"], body["devices"], body["bootEpoch"]) == (0, 4, 1_700_000_000)
    assert body["ready"] is True
    assert isinstance(body["pod"], str)
    assert metrics.status_code == 200
    assert "simulator_messages_total" in metrics.text
    assert "circuit_breaker_state" in metrics.text


async def test_bounded_run_with_faults_keeps_the_invariant(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.txt"
    settings = fast_settings(
        device_count=20,
        max_messages_per_device=30,
        drop_rate=0.15,
        jitter_rate=0.2,
        max_jitter=0.02,
        duplicate_rate=0.1,
        malformed_rate=0.05,
        ledger_path=str(ledger),
    )
    transport = FakeTransport()
    sim = Simulator(settings, transport)
    snapshots = []

    async def outage() -> None:
        await asyncio.sleep(0.05)
        transport.up = False  # the breaker opens, messages buffer
        for _ in range(10):
            snapshots.append(sim.status())
            await asyncio.sleep(0.02)
        transport.up = True  # half-open probe after reset_timeout, then drain

    outage_task = asyncio.create_task(outage())
    await asyncio.wait_for(sim.run(asyncio.Event()), 10)
    await outage_task
    final = sim.status()
    m = final.messages
    assert all(s.messages.invariant_holds() for s in snapshots)
    assert any(s.circuit_breaker.state == "open" and s.messages.buffered for s in snapshots)
    assert m.invariant_holds()
    assert m.generated == 20 * 30
    assert m.buffered == m.in_flight == m.buffer_overflow == m.rejected == 0
    assert m.acknowledged == m.generated - m.dropped
    assert 0 < m.dropped < m.generated
    assert m.duplicated > 0
    assert m.malformed > 0
    assert final.circuit_breaker.state == "closed"
    assert final.circuit_breaker.opened_total >= 1
    entries = read_ledger(ledger)
    assert entries.acknowledged_total == m.acknowledged
    assert len(entries.malformed) == m.malformed
    assert len(entries.dropped) == m.dropped
    assert not entries.rejected
    # Every generated sequence number is accounted for exactly once.
    accounted = entries.acknowledged | entries.malformed | entries.dropped
    assert len(accounted) == m.generated
    assert len(ledger.read_text().splitlines()) == m.generated
    assert transport.started
    assert transport.closed


async def test_stop_event_shuts_down_and_reports_unflushed_messages() -> None:
    settings = fast_settings(device_count=5, shutdown_timeout=0.1, breaker_reset_timeout=60)
    transport = FakeTransport()
    transport.up = False
    sim = Simulator(settings, transport)
    stop = asyncio.Event()
    run = asyncio.create_task(sim.run(stop))
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(run, 5)
    m = sim.status().messages
    assert m.generated > 0
    assert m.buffered > 0
    assert m.in_flight == 0
    assert m.invariant_holds()
