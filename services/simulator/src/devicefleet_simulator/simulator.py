"""A fleet of simulated devices in one event loop, and its lifecycle.

Each device is a small task ticking every ``publish_interval``; start times are staggered
across the interval so a thousand devices publish as a steady stream, not a burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

from opentelemetry import trace

from devicefleet_common.devices import fleet_device_ids
from devicefleet_common.features import (
    FEATURES_KEY,
    TRUTH_KEY,
    FeatureWindow,
    device_time,
    edge_block,
    sample_of,
)
from devicefleet_common.logging import get_logger
from devicefleet_common.schemas import make_message_id
from devicefleet_simulator import metrics
from devicefleet_simulator.delivery import Delivery, ResiliencePolicy
from devicefleet_simulator.faults import FaultInjector, FaultRates
from devicefleet_simulator.http_transport import HttpBatchTransport, HttpTransport
from devicefleet_simulator.ledger import Ledger
from devicefleet_simulator.message import OutgoingMessage
from devicefleet_simulator.mqtt_transport import MqttTransport
from devicefleet_simulator.profiles import DeviceModel, Reading, TruckModel, make_model
from devicefleet_simulator.settings import Settings
from devicefleet_simulator.stats import MessageStats
from devicefleet_simulator.status import SimulatorStatus, create_status_app, status_server
from devicefleet_simulator.transport import Transport

log = get_logger("devicefleet.simulator")
tracer = trace.get_tracer("devicefleet.simulator")


@dataclass
class SimulatedDevice:
    device_id: str
    model: DeviceModel
    next_sequence: int = 0  # per boot, so (device, boot epoch, sequence) is unique
    window: FeatureWindow | None = None  # edge mode: this device's last readings


def build_transport(settings: Settings) -> Transport:
    token = settings.ingest_token.get_secret_value() if settings.ingest_token else None
    if settings.transport == "http" and settings.edge:
        return HttpBatchTransport(
            settings.ingest_url,
            settings.request_timeout,
            batch_max=settings.http_batch_max,
            linger=settings.http_batch_linger,
            token=token,
        )
    if settings.transport == "http":
        return HttpTransport(settings.ingest_url, settings.request_timeout, token=token)
    client_id = f"devicefleet-sim-{settings.fleet}-{settings.profile}-{settings.device_start_index}"
    return MqttTransport(
        settings.mqtt_host,
        settings.mqtt_port,
        settings.mqtt_keepalive,
        client_id,
        settings.request_timeout,
        connection=settings,
    )


def _rng(seed: int | None, stream: str) -> random.Random:
    # A string seed is hashed deterministically, so each device has its own stable stream.
    return random.Random(f"{seed}/{stream}") if seed is not None else random.Random()


class Simulator:
    def __init__(self, settings: Settings, transport: Transport | None = None) -> None:
        self.settings = s = settings
        self.pod = socket.gethostname()
        self.stats = MessageStats()
        self.ledger = Ledger(s.ledger_path)
        self.transport = transport or build_transport(s)
        self.delivery = Delivery(
            self.transport,
            ResiliencePolicy(
                retry_max_attempts=s.retry_max_attempts,
                retry_base=s.retry_base,
                retry_max=s.retry_max,
                breaker_fail_max=s.breaker_fail_max,
                breaker_reset_timeout=s.breaker_reset_timeout,
                buffer_size=s.buffer_size,
                drain_batch=s.drain_batch,
            ),
            self.stats,
            self.ledger,
        )
        self.faults = FaultInjector(
            FaultRates(
                drop_rate=s.drop_rate,
                jitter_rate=s.jitter_rate,
                max_jitter=s.max_jitter,
                duplicate_rate=s.duplicate_rate,
                malformed_rate=s.malformed_rate,
            ),
            _rng(s.seed, "faults"),
        )
        self.devices = [
            SimulatedDevice(
                device_id,
                make_model(s.profile, device_id, _rng(s.seed, device_id)),
                window=FeatureWindow() if s.edge else None,
            )
            for device_id in fleet_device_ids(
                s.profile, s.fleet, s.device_start_index, s.device_count
            )
        ]

    def status(self) -> SimulatorStatus:
        s = self.settings
        return SimulatorStatus(
            fleet=s.fleet,
            profile=s.profile,
            transport=s.transport,
            pod=self.pod,
            device_start=s.device_start_index,
            devices=len(self.devices),
            boot_epoch=s.boot_epoch,
            ready=self.transport.ready and self.delivery.breaker_state != "open",
            circuit_breaker=self.delivery.breaker_status(),
            messages=self.stats.snapshot(len(self.delivery.buffer)),
        )

    # --- generation -------------------------------------------------------------------------

    def generate(self, device: SimulatedDevice, now: datetime) -> OutgoingMessage | None:
        """One tick of one device; returns the message handed to delivery (None if dropped)."""
        reading = device.model.tick(now)
        sequence = device.next_sequence
        device.next_sequence += 1
        self.stats.count("generated")
        self._annotate(device, sequence, reading)
        plan = self.faults.plan()
        message = OutgoingMessage(
            device_id=device.device_id,
            boot_epoch=self.settings.boot_epoch,
            sequence=sequence,
            topic=reading.topic,
            payload=reading.payload,
            malformed=plan.malformed,
            duplicate=plan.duplicate,
        )
        if plan.drop:
            self.stats.count("dropped")
            self.ledger.record(message, "dropped")
            log.debug(
                "message dropped (fault)",
                device_id=device.device_id,
                message_id=message.message_id,
            )
            return None
        if plan.malformed:
            self.stats.count("malformed")
            if plan.malformed == "wrong-type":
                message.payload = self.faults.corrupt(message.payload)
        message.span = tracer.start_span(
            "simulator.message",
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "device.id": device.device_id,
                "messaging.message.id": message.message_id,
                "messaging.destination.name": message.topic,
                "simulator.transport": self.transport.name,
            },
        )
        self.delivery.submit(message, jitter=plan.jitter)
        return message

    def _annotate(self, device: SimulatedDevice, sequence: int, reading: Reading) -> None:
        """Edge features and test-mode ground truth ride in reserved ``_`` payload keys.

        Features are computed here, before any fault: the gateway sees every reading even
        when the uplink later drops it.
        """
        payload = reading.payload
        if device.window is not None:
            sample = sample_of(device_time(payload["timestamp"]), payload)
            message_id = make_message_id(device.device_id, self.settings.boot_epoch, sequence)
            features = device.window.add(message_id, sample) if sample else None
            if features is not None:
                payload[FEATURES_KEY] = edge_block(features)
        if self.settings.ground_truth and isinstance(device.model, TruckModel):
            payload[TRUTH_KEY] = device.model.state

    async def _device_loop(self, slot: int, device: SimulatedDevice) -> None:
        interval = self.settings.publish_interval
        limit = self.settings.max_messages_per_device
        loop = asyncio.get_running_loop()
        next_at = loop.time() + interval * slot / max(1, len(self.devices))
        while limit is None or device.next_sequence < limit:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            self.generate(device, datetime.now(UTC))
            next_at += interval
            if next_at < loop.time() - interval:
                next_at = loop.time()  # fell behind (overloaded): skip, do not burst

    async def run_devices(self) -> None:
        metrics.DEVICES.set(len(self.devices))
        async with asyncio.TaskGroup() as group:
            for slot, device in enumerate(self.devices):
                group.create_task(self._device_loop(slot, device))

    # --- lifecycle --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until every device reached its message limit or ``stop`` is set."""
        s = self.settings
        server = status_server(create_status_app(self.status), s.status_host, s.status_port)
        server_task = asyncio.create_task(server.serve(), name="status-server")
        await self.transport.start()
        drain = asyncio.create_task(self.delivery.run_drain(), name="drain")
        devices = asyncio.create_task(self.run_devices(), name="devices")
        stopper = asyncio.create_task(stop.wait(), name="stop")
        log.info(
            "simulator started",
            fleet=s.fleet,
            profile=s.profile,
            transport=s.transport,
            devices=len(self.devices),
            device_start=s.device_start_index,
            boot_epoch=s.boot_epoch,
            status=f"http://{s.status_host}:{s.status_port}/status",
        )
        try:
            await asyncio.wait({devices, stopper, server_task}, return_when=asyncio.FIRST_COMPLETED)
            if server_task.done() and not server_task.cancelled() and server_task.exception():
                log.error("status server failed", error=str(server_task.exception()))
        finally:
            stopper.cancel()
            await self.shutdown(devices, drain)
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server_task, timeout=5)

    async def shutdown(self, devices: asyncio.Task[None], drain: asyncio.Task[None]) -> None:
        devices.cancel()  # stop generating first
        with contextlib.suppress(asyncio.CancelledError):
            await devices
        try:
            async with asyncio.timeout(self.settings.shutdown_timeout):
                await self.delivery.wait_idle()
            flushed = True
        except TimeoutError:
            flushed = False
        await self.delivery.cancel_in_flight()
        drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drain
        self.delivery.abandon_buffer()
        await self.transport.close()
        self.ledger.close()
        status = self.status()
        summary = status.messages.model_dump(by_alias=True)
        level = log.info if flushed and not status.messages.buffer_overflow else log.warning
        level(
            "simulator stopped",
            flushed=flushed,
            circuit_breaker=status.circuit_breaker.state,
            breaker_transitions=status.circuit_breaker.transitions,
            invariant_holds=status.messages.invariant_holds(),
            **summary,
        )
